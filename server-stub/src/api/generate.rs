//! `POST /api/management/v1/deployments/artifacts/generate`: an artifact
//! for Mender's `single-file` update module made from an uploaded file
//! (`spec/mender-management-api.md` section 3.3), as Mender's UI asks for.
//!
//! Multipart parts, read in order up to `file` (anything after it is never
//! read, as upstream): `name`, `description`, `device_types_compatible`
//! (repeated, or comma-separated in one part, or both), `type`
//! (`single_file`, Mender's spelling; `single-file` is accepted too), `args`
//! (JSON `{"filename": …, "dest_dir": …}`) and `file`.
//!
//! The artifact is what Mender's `single-file-artifact-gen` script makes
//! with `mender-artifact write module-image -T single-file` (upstream's
//! worker runs that script): format v3, gzip, payload files `dest_dir`,
//! `filename` and `permissions` (each its value and a newline; the
//! permissions are `644`, the mode upstream's worker gives the file it
//! downloads) and the uploaded file under `filename`, all mode 0644. It
//! is written by `updraft-core`'s writer and then stored exactly as an
//! upload: checked by the reader on the way into `<id>.part`, then
//! recorded. This server has no artifact signing key, so the artifact is
//! unsigned (like upstream's generation without one); with verification
//! keys configured it is therefore refused (400, saying so).
//!
//! Upstream answers 201 at once and builds the artifact in a background
//! worker; here it is built before the answer, so a 201 means the artifact
//! is stored, and a failure is the answer (400 naming the problem, nothing
//! stored) instead of a silently missing artifact.

use std::path::{Path as FsPath, PathBuf};

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use updraft_core::artifact::write::{self as writer, Payload, Spec, WriteError};

use super::deployments::{created, store_artifact, PartFile};
use super::UserAuth;
use crate::artifacts::{self, UploadError};
use crate::db;
use crate::error::ApiError;
use crate::AppState;

/// The update module the generated artifacts are for.
const MODULE: &str = "single-file";

/// The names of the module's meta files in the payload.
const META_FILES: [&str; 3] = ["dest_dir", "filename", "permissions"];

/// The uploaded file's mode in the artifact (and in `permissions`).
const FILE_MODE: u32 = 0o644;

/// The parts read before `file`.
#[derive(Default)]
struct Fields {
    name: String,
    description: String,
    device_types: Vec<String>,
    kind: Option<String>,
    args: Option<String>,
}

/// `args`, as upstream's worker reads it (unknown keys ignored).
#[derive(serde::Deserialize)]
struct Args {
    #[serde(default)]
    filename: String,
    #[serde(default)]
    dest_dir: String,
}

/// What the artifact is made of, once the parts are checked.
struct Plan {
    name: String,
    description: String,
    device_types: Vec<String>,
    filename: String,
    dest_dir: String,
}

fn check_path_text(what: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "args: {what} must not contain control characters"
        )));
    }
    Ok(())
}

impl Fields {
    /// Check the parts as upstream does (required fields first, named in
    /// one message), then `type` and `args`.
    fn plan(self) -> Result<Plan, ApiError> {
        let mut blank = Vec::new();
        if self.device_types.is_empty() {
            blank.push("device_types_compatible: cannot be blank");
        }
        if self.name.trim().is_empty() {
            blank.push("name: cannot be blank");
        }
        let kind = self.kind.as_deref().map(str::trim).unwrap_or("");
        if kind.is_empty() {
            blank.push("type: cannot be blank");
        }
        if !blank.is_empty() {
            return Err(ApiError::bad_request(format!("{}.", blank.join("; "))));
        }
        if kind != "single_file" && kind != MODULE {
            return Err(ApiError::bad_request(format!(
                "type: unsupported artifact type {kind:?}: only single_file can be generated"
            )));
        }
        let args = self.args.as_deref().unwrap_or("").trim();
        if args.is_empty() {
            return Err(ApiError::bad_request(
                "args: cannot be blank: single_file needs {\"filename\": …, \"dest_dir\": …}",
            ));
        }
        let args: Args = serde_json::from_str(args)
            .map_err(|e| ApiError::bad_request(format!("args: can't parse 'args': {e}")))?;
        let filename = args.filename;
        if filename.is_empty() {
            return Err(ApiError::bad_request(
                "args: destination filename can't be empty",
            ));
        }
        if filename.contains('/') || filename == "." || filename == ".." {
            return Err(ApiError::bad_request(format!(
                "args: filename {filename:?} must be a file name, not a path"
            )));
        }
        if META_FILES.contains(&filename.as_str()) {
            return Err(ApiError::bad_request(format!(
                "args: filename {filename:?} is taken by the single-file module's own files ({})",
                META_FILES.join(", ")
            )));
        }
        check_path_text("filename", &filename)?;
        if !args.dest_dir.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "args: invalid artifact destination dir {:?}: must be an absolute path",
                args.dest_dir
            )));
        }
        check_path_text("dest_dir", &args.dest_dir)?;
        Ok(Plan {
            name: self.name.trim().to_owned(),
            description: self.description,
            device_types: self.device_types,
            filename,
            dest_dir: args.dest_dir,
        })
    }
}

/// Removes the generation's working directory however the handler ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `POST /artifacts/generate`: 201 with `Location` once the artifact is
/// stored; 400 naming the problem (nothing stored); 413 for a file over
/// the artifact size limit; 409 for a name and device types clash.
pub async fn generate_artifact(
    State(st): State<AppState>,
    _user: UserAuth,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut mp = mp.map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Bad Content-Type, expected 'multipart/form-data'",
        )
    })?;
    let multipart_err = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Artifact file too large")
        } else {
            ApiError::bad_request(format!("malformed multipart request: {}", e.body_text()))
        }
    };
    let mut fields = Fields::default();
    while let Some(mut field) = mp.next_field().await.map_err(multipart_err)? {
        let part = field.name().unwrap_or("").to_owned();
        match part.as_str() {
            "name" => fields.name = field.text().await.map_err(multipart_err)?,
            "description" => {
                fields.description = field.text().await.map_err(multipart_err)?;
                if fields.description.len() > 4096 {
                    return Err(ApiError::bad_request("description: too long"));
                }
            }
            "device_types_compatible" => {
                let t = field.text().await.map_err(multipart_err)?;
                fields.device_types.extend(
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
            "type" => fields.kind = Some(field.text().await.map_err(multipart_err)?),
            "args" => fields.args = Some(field.text().await.map_err(multipart_err)?),
            "file" => {
                let plan = fields.plan()?;
                let id = db::new_id();
                let work = WorkDir(st.artifact_dir.join(format!("{id}.gen")));
                tokio::fs::create_dir(&work.0)
                    .await
                    .map_err(|e| ApiError::internal(format_args!("generating artifact: {e}")))?;
                let input = work.0.join(&plan.filename);
                receive_file(
                    &mut field,
                    &input,
                    st.config.max_artifact_size,
                    multipart_err,
                )
                .await?;
                let output = work.0.join("artifact.mender");
                build(&plan, &work.0, &input, &output).await?;
                let part = st.artifact_dir.join(format!("{id}.part"));
                let _guard = PartFile(part.clone());
                let (parsed, size) = check(&st, &output, part.clone()).await?;
                store_artifact(&st, &id, &part, &plan.description, &parsed, size).await?;
                return Ok(created(format!(
                    "./management/v1/deployments/artifacts/{id}"
                )));
            }
            _ => {}
        }
    }
    // No file: the parts' own problems first, as upstream validates them
    // together.
    fields.plan()?;
    Err(ApiError::bad_request("request does not contain the file"))
}

/// Stream the `file` part to `path`, at most `max` bytes (413 beyond);
/// `multipart_err` maps a broken stream.
async fn receive_file(
    field: &mut axum::extract::multipart::Field<'_>,
    path: &FsPath,
    max: u64,
    multipart_err: impl Fn(MultipartError) -> ApiError,
) -> Result<(), ApiError> {
    let io = |e: std::io::Error| ApiError::internal(format_args!("storing the file: {e}"));
    let mut out = tokio::fs::File::create(path).await.map_err(io)?;
    let mut total = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(&multipart_err)? {
        total += chunk.len() as u64;
        if total > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Artifact file too large",
            ));
        }
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(())
}

/// Write the module's meta files into `dir` and the artifact to `output`
/// (on a blocking thread: the writer reads files and compresses).
async fn build(plan: &Plan, dir: &FsPath, input: &FsPath, output: &FsPath) -> Result<(), ApiError> {
    let dir = dir.to_owned();
    let input = input.to_owned();
    let output = output.to_owned();
    let spec_parts = (
        plan.name.clone(),
        plan.device_types.clone(),
        plan.dest_dir.clone(),
        plan.filename.clone(),
    );
    let r = tokio::task::spawn_blocking(move || -> Result<(), WriteError> {
        use std::os::unix::fs::PermissionsExt;
        let (name, device_types, dest_dir, filename) = spec_parts;
        let io = |what: String| move |error| WriteError::Io { what, error };
        let mode = std::fs::Permissions::from_mode(FILE_MODE);
        let mut files = Vec::new();
        for (file, text) in META_FILES.iter().zip([
            format!("{dest_dir}\n"),
            format!("{filename}\n"),
            format!("{FILE_MODE:o}\n"),
        ]) {
            let path = dir.join(file);
            std::fs::write(&path, text).map_err(io(format!("writing {file}")))?;
            std::fs::set_permissions(&path, mode.clone()).map_err(io(format!("writing {file}")))?;
            files.push(path);
        }
        std::fs::set_permissions(&input, mode).map_err(io("storing the file".into()))?;
        files.push(input);
        let spec = Spec {
            payload: Some(Payload::ModuleImage {
                module: MODULE.into(),
                files,
                meta_data: None,
            }),
            name,
            device_types,
            ..Spec::default()
        };
        let mut out = std::fs::File::create(&output).map_err(io("creating the artifact".into()))?;
        writer::write_artifact(&spec, None, &mut out, |_| {})?;
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?;
    r.map_err(|e| match e {
        WriteError::Invalid(msg) => ApiError::bad_request(msg),
        other => ApiError::internal(format_args!("generating artifact: {other}")),
    })
}

/// Run the generated artifact through the upload check into `part`: the
/// reader checks every digest, as for an upload.
async fn check(
    st: &AppState,
    artifact: &FsPath,
    part: PathBuf,
) -> Result<(artifacts::Parsed, u64), ApiError> {
    let (tx, handle) = artifacts::spawn_check(part, st.verify_keys.clone());
    let io = |e: std::io::Error| ApiError::internal(format_args!("storing artifact: {e}"));
    let mut f = tokio::fs::File::open(artifact).await.map_err(io)?;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let n = f.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        if tx.send(buf.into()).await.is_err() {
            break; // the checker stopped: its error follows
        }
    }
    drop(tx);
    match handle.await.map_err(ApiError::internal)? {
        Ok(r) => Ok(r),
        Err(UploadError::Invalid(msg)) if !st.verify_keys.is_empty() => {
            Err(ApiError::bad_request(format!(
                "the generated artifact is unsigned (this server has no artifact signing key) \
                 but uploads must be signed by an artifact verification key: {msg}"
            )))
        }
        Err(UploadError::Invalid(msg)) => Err(ApiError::bad_request(msg)),
        Err(UploadError::Io(e)) => Err(io(e)),
    }
}
