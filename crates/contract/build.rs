//! Generates the Rust code of every `.proto` file under the workspace's
//! `proto/` folder, with a vendored `protoc` so that no hand install is needed.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not compiled in: a build script binary may be shared
    // by checkouts of the workspace in other folders (git worktrees).
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let proto_root = proto_root.canonicalize()?;
    let mut files = Vec::new();
    collect_protos(&proto_root, &mut files)?;
    files.sort();

    // tonic 0.14's generator no longer prints rerun-if-changed for us.
    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    // SAFETY: build scripts are single-threaded, so nothing reads the
    // environment while it changes.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // Type names let the codec find each message's descriptor.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        // Methods a service does not implement yet answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        // Every message is checked for NUL bytes in its text fields as it is
        // decoded (src/checked.rs).
        .codec_path("crate::checked::CheckedCodec")
        .file_descriptor_set_path(out_dir.join("cairn_descriptor.bin"))
        .compile_with_config(config, &files, &[proto_root, include])?;
    Ok(())
}

fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
