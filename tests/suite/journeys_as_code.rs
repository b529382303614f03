//! Journeys as code: `cairn journeys apply` validates every file first,
//! applies nothing when one is wrong, creates new journeys, versions changed
//! ones and leaves unchanged ones alone.

use std::path::PathBuf;

use cairn::journeys::{Outcome, apply};
use cairn_contract::journey::v1::GetJourneyDefinitionRequest;
use cairn_runtime::ServiceKind;
use cairn_tests::spawn_app;
use tonic::Code;

const WELCOME: &str = r#"
journey_id = "welcome"
display_name = "Welcome"

[[stages]]
name = "activated"
condition = 'touchpoint.type == "usage"'
max_duration = "7d"

[[stages]]
name = "first_top_up"
condition = 'touchpoint.type == "purchase"'
completes_journey = true
"#;

fn folder(files: &[(&str, &str)]) -> PathBuf {
    let folder = std::env::temp_dir().join(format!("cairn-journeys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    for (name, text) in files {
        std::fs::write(folder.join(name), text).unwrap();
    }
    folder
}

#[tokio::test]
async fn journeys_in_files_are_validated_then_applied_once() {
    let app = spawn_app().await;
    let address = format!("http://{}", app.addresses[&ServiceKind::Journey]);
    let token = app.token(&["journey.read", "journey.write"]);

    // One broken file stops everything, and says where.
    let broken = folder(&[
        ("welcome.toml", WELCOME),
        (
            "broken.toml",
            "journey_id = \"broken\"\n[[stages]]\nname = \"x\"\ncondition = 'touchpoint.type =='\n",
        ),
    ]);
    let refused = apply(&address, Some(&token), std::slice::from_ref(&broken), false)
        .await
        .unwrap_err();
    assert!(
        refused.contains("broken.toml: stages[0].condition"),
        "{refused}"
    );
    let mut journey = app.journey().await;
    let absent = journey
        .get_journey_definition(GetJourneyDefinitionRequest {
            journey_id: "welcome".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(absent.code(), Code::NotFound, "nothing was applied");

    let good = folder(&[("welcome.toml", WELCOME)]);
    let applied = apply(&address, Some(&token), std::slice::from_ref(&good), false)
        .await
        .unwrap();
    assert_eq!(applied, [Outcome::Created("welcome".into())]);
    let again = apply(&address, Some(&token), std::slice::from_ref(&good), false)
        .await
        .unwrap();
    assert_eq!(again, [Outcome::Unchanged("welcome".into())]);

    std::fs::write(
        good.join("welcome.toml"),
        WELCOME.replace("max_duration = \"7d\"", "max_duration = \"3d\""),
    )
    .unwrap();
    let changed = apply(&address, Some(&token), std::slice::from_ref(&good), false)
        .await
        .unwrap();
    assert_eq!(changed, [Outcome::Updated("welcome".into(), 2)]);
    let stored = journey
        .get_journey_definition(GetJourneyDefinitionRequest {
            journey_id: "welcome".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .definition
        .unwrap();
    assert_eq!(stored.stages[0].max_duration.unwrap().seconds, 3 * 86_400);

    // Without a token the service refuses, and the command says so.
    let anonymous = apply(&address, None, std::slice::from_ref(&good), false)
        .await
        .unwrap_err();
    assert!(anonymous.contains("validating"), "{anonymous}");
    for path in [broken, good] {
        let _ = std::fs::remove_dir_all(path);
    }
    app.stop().await;
}
