//! Journeys as code: `cairn journeys apply <files or folders>` reads journey
//! definitions kept as TOML files in the operator's own repository, has the
//! journey service validate every one of them first, and applies them only
//! when all are valid: new journeys are created, changed ones get a new
//! version, unchanged ones are left alone. Run it from CI after a merge.

use std::path::{Path, PathBuf};

use cairn_contract::journey::v1 as pb;
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_journey::domain::definition::DefinitionDocument;
use cairn_journey::grpc::definitions::{document_to_proto, same_content};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new journey, version 1.
    Created(String),
    /// A new version of an existing journey.
    Updated(String, i32),
    /// Identical to the latest version; nothing written.
    Unchanged(String),
    /// Would be created or updated (a dry run).
    WouldApply(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Created(id) => write!(f, "{id}: created (version 1)"),
            Self::Updated(id, version) => write!(f, "{id}: updated to version {version}"),
            Self::Unchanged(id) => write!(f, "{id}: unchanged"),
            Self::WouldApply(id) => write!(f, "{id}: valid, would be applied"),
        }
    }
}

/// The `.toml` files among `paths` (folders are read one level deep), sorted.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|error| format!("{}: {error}", path.display()))?;
            for entry in entries {
                let file = entry.map_err(|error| error.to_string())?.path();
                if file.extension().is_some_and(|ext| ext == "toml") {
                    found.push(file);
                }
            }
        } else {
            found.push(path.clone());
        }
    }
    found.sort();
    if found.is_empty() {
        return Err("no journey files (*.toml) found".into());
    }
    Ok(found)
}

fn read(file: &Path) -> Result<pb::JourneyDefinition, String> {
    let text =
        std::fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))?;
    let document = DefinitionDocument::from_toml(&text)
        .map_err(|error| format!("{}: {error}", file.display()))?;
    document_to_proto(&document).map_err(|error| format!("{}: {error}", file.display()))
}

/// Validates every file with the journey service at `address`, then, unless
/// `dry_run`, applies them. Nothing is applied when any file is invalid; the
/// error lists every problem with its file and field.
pub async fn apply(
    address: &str,
    token: Option<&str>,
    paths: &[PathBuf],
    dry_run: bool,
) -> Result<Vec<Outcome>, String> {
    let files = files(paths)?;
    let channel = Channel::from_shared(address.to_string())
        .map_err(|error| format!("{address}: {error}"))?
        .connect()
        .await
        .map_err(|error| format!("cannot reach the journey service at {address}: {error}"))?;
    let bearer = token
        .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
        .transpose()
        .map_err(|_| "the token is not a valid header value".to_string())?;
    let mut client =
        JourneyServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(bearer) = &bearer {
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
            }
            Ok(request)
        });

    let mut definitions = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        match read(file) {
            Ok(definition) => {
                let checked = client
                    .validate_journey_definition(pb::ValidateJourneyDefinitionRequest {
                        definition: Some(definition.clone()),
                    })
                    .await
                    .map_err(|status| {
                        format!("validating {}: {}", file.display(), status.message())
                    })?
                    .into_inner();
                problems.extend(
                    checked
                        .problems
                        .iter()
                        .map(|problem| format!("{}: {problem}", file.display())),
                );
                definitions.push(definition);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "nothing applied; fix these first:\n  {}",
            problems.join("\n  ")
        ));
    }

    let mut outcomes = Vec::new();
    for definition in definitions {
        let id = definition.journey_id.clone();
        let latest = match client
            .get_journey_definition(pb::GetJourneyDefinitionRequest {
                journey_id: id.clone(),
                version: 0,
            })
            .await
        {
            Ok(found) => found.into_inner().definition,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(format!("{id}: {}", status.message())),
        };
        let outcome = match latest {
            Some(latest) if same_content(&latest, &definition) => Outcome::Unchanged(id),
            _ if dry_run => Outcome::WouldApply(id),
            None => {
                client
                    .create_journey_definition(pb::CreateJourneyDefinitionRequest {
                        definition: Some(definition),
                    })
                    .await
                    .map_err(|status| format!("{id}: {}", status.message()))?;
                Outcome::Created(id)
            }
            Some(latest) => {
                let updated = client
                    .update_journey_definition(pb::UpdateJourneyDefinitionRequest {
                        definition: Some(pb::JourneyDefinition {
                            etag: latest.etag,
                            ..definition
                        }),
                        update_mask: None,
                    })
                    .await
                    .map_err(|status| format!("{id}: {}", status.message()))?
                    .into_inner()
                    .definition
                    .map(|d| d.version)
                    .unwrap_or_default();
                Outcome::Updated(id, updated)
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
