//! `saguaro verify FILE`: checks a `.cact` file's structure and the xxh3-64 checksum of its
//! header and manifest, of every tensor and of every auxiliary file (docs/format.md,
//! "Checksums"). Exit status 0 when all match; 1 with the damaged regions named otherwise, or
//! when the file has no checksums (written before they existed).

use std::path::PathBuf;

use clap::Args;
use saguaro_engine::Result;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A .cact model file.
    file: PathBuf,
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    let regions = saguaro_host::loader::verify_file(&args.file)?;
    let file = saguaro_host::loader::open_cact(&args.file)?;
    let m = &file.manifest;
    super::print::write_stdout(
        format!(
            "{}: ok ({regions} checksums match: header and manifest, {} tensors, {} files; {})\n",
            args.file.display(),
            m.tensors.len(),
            m.files.len(),
            saguaro_engine::format::CHECKSUM_ALGORITHM
        )
        .as_bytes(),
    )
}
