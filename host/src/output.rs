//! Writing output files without ever losing data:
//!
//! - [`check_output`] refuses an output path that is one of the command's inputs: the same
//!   path, a hard link or symlink to an input file (same device and inode, compared by
//!   `same-file`), or any path inside an input folder (a model folder or the hub cache's
//!   snapshot). Nothing is created or changed before the refusal.
//! - [`PartialOutput`] writes to a temporary file next to the output and renames it over the
//!   output only when complete. Dropping it unfinished (an error, a panic) deletes the
//!   temporary file, and so does SIGINT, SIGTERM or SIGHUP (Ctrl-C, `kill`, a closed
//!   terminal): a handler thread (signal-hook) removes every partial output still registered,
//!   then exits with status 128 + the signal. An existing output is replaced only by a complete
//!   new one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

use saguaro_engine::{Error, Result};

/// Temporary files of outputs being written (removed by the signal handler).
static PARTIAL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn partial_list() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic while holding the lock cannot leave the list inconsistent (push and retain).
    PARTIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the signal handler once (on the first partial output of the process).
fn install_signal_cleanup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            // Without a handler (it cannot be installed) the signal kills the process as usual
            // and a temporary file may remain; errors and panics are still covered by Drop.
            if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
                let spawned = std::thread::Builder::new().name("saguaro-signals".into()).spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        let removed: Vec<PathBuf> = partial_list().drain(..).filter(|p| std::fs::remove_file(p).is_ok()).collect();
                        let what = if removed.is_empty() { String::new() } else { " (partial output removed)".to_string() };
                        eprintln!("error: interrupted by signal {signal}{what}");
                        std::process::exit(128 + signal);
                    }
                });
                drop(spawned);
            }
        }
    });
}

/// The path `out` names once written: its folder resolved (symlinks, `..`), the file name
/// kept. An existing `out` resolves through symlinks to the file it points at.
fn resolve_output(out: &Path) -> Result<PathBuf> {
    if out.exists() {
        return std::fs::canonicalize(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())));
    }
    let name = out
        .file_name()
        .ok_or_else(|| Error::Input(format!("{}: the output needs a file name (e.g. model.cact)", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = std::fs::canonicalize(parent).map_err(|e| {
        Error::Io(format!("{}: cannot write there: the folder {} {}", out.display(), parent.display(), describe_io(&e)))
    })?;
    Ok(parent.join(name))
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        _ => format!("cannot be used ({e})"),
    }
}

/// Refuses to write `out` when it is, or would replace, one of `inputs` (files or folders).
pub fn check_output(out: &Path, inputs: &[&Path]) -> Result<()> {
    if out.is_dir() {
        return Err(Error::Input(format!(
            "{} is a folder: give the path of the file to write (e.g. {})",
            out.display(),
            out.join("model.cact").display()
        )));
    }
    let resolved = resolve_output(out)?;
    for input in inputs {
        let refuse = |why: String| {
            Err(Error::Input(format!("refusing to write {}: {why}; choose another output path", out.display())))
        };
        if input.is_dir() {
            let folder = std::fs::canonicalize(input).map_err(|e| Error::Io(format!("{}: {e}", input.display())))?;
            if resolved.starts_with(&folder) {
                return refuse(format!("it is inside the source folder {}", input.display()));
            }
            if out.exists() {
                let entries = std::fs::read_dir(input).map_err(|e| Error::Io(format!("{}: {e}", input.display())))?;
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_file() && same_file::is_same_file(out, &path).unwrap_or(false) {
                        return refuse(format!("it is the same file as {} of the source folder (a link to it)", path.display()));
                    }
                }
            }
        } else if out.exists() && (same_file::is_same_file(out, input).unwrap_or(false)
            || std::fs::canonicalize(input).is_ok_and(|p| p == resolved))
        {
            return refuse(format!("it is the input file {} (the same file, or a link to it)", input.display()));
        }
    }
    Ok(())
}

/// An output file being written: a temporary file in the output's folder, renamed over the
/// output by [`PartialOutput::commit`]; removed if dropped before (or on a signal).
pub struct PartialOutput {
    out: PathBuf,
    temp: Option<tempfile::NamedTempFile>,
}

impl PartialOutput {
    /// Creates the temporary file for `out` (call [`check_output`] first).
    pub fn create(out: &Path) -> Result<PartialOutput> {
        install_signal_cleanup();
        // Next to `out` itself (not what a symlink there points to): the rename must stay within
        // one file system, and it replaces the link, never a file elsewhere.
        resolve_output(out)?;
        let folder = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        // The finished file gets the usual mode of a new file (0666 less the umask), not
        // tempfile's private 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = builder.tempfile_in(folder).map_err(|e| Error::Io(format!("{}: cannot create the output: {e}", out.display())))?;
        partial_list().push(temp.path().to_path_buf());
        Ok(PartialOutput { out: out.to_path_buf(), temp: Some(temp) })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        self.temp.as_ref().expect("present until commit").as_file()
    }

    /// An I/O error about the output, named by the user's path (never the temporary name).
    pub fn io_error(&self, e: impl std::fmt::Display) -> Error {
        Error::Io(format!("{}: {e}", self.out.display()))
    }

    /// Flushes the data to disk and renames the temporary file over the output.
    pub fn commit(mut self) -> Result<()> {
        let temp = self.temp.take().expect("present until commit");
        temp.as_file().sync_all().map_err(|e| self.io_error(e))?;
        let temp_path = temp.path().to_path_buf();
        let result = temp.persist(&self.out).map_err(|e| self.io_error(e.error));
        // After the rename (or after its failure dropped and removed the temporary file).
        partial_list().retain(|p| p != &temp_path);
        result.map(drop)
    }
}

impl Drop for PartialOutput {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let path = temp.path().to_path_buf();
            drop(temp); // removes the file
            partial_list().retain(|p| p != &path);
        }
    }
}
