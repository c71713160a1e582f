//! Weights from the Hugging Face Hub (hf-hub 0.5), through the shared Hub cache: the cache is
//! looked in first, `HF_HOME`/`HF_HUB_CACHE` choose where it is, and `HF_HUB_OFFLINE=1` forbids
//! the network (a file not in the cache is then an error, not a download attempt).

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::Vgg16Error;

/// File fetched when a `hf:` spec names none.
pub(crate) const DEFAULT_FILE: &str = "model.safetensors";

/// A parsed `hf:REPO[@REVISION][:FILE]` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubSpec {
    pub repo: String,
    pub revision: Option<String>,
    pub file: String,
}

impl HubSpec {
    /// Parses the part after `hf:`.
    pub fn parse(rest: &str) -> Result<Self, Vgg16Error> {
        let (repo_rev, file) = rest.split_once(':').unwrap_or((rest, DEFAULT_FILE));
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) => (r, Some(rev.to_string())),
            None => (repo_rev, None),
        };
        if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) || file.is_empty() {
            return Err(Vgg16Error::Hub {
                repo: rest.to_string(),
                reason: "expected hf:OWNER/NAME[@REVISION][:FILE], e.g. hf:timm/vgg16.tv_in1k"
                    .into(),
            });
        }
        Ok(Self {
            repo: repo.to_string(),
            revision,
            file: file.to_string(),
        })
    }

    fn hub_repo(&self) -> Repo {
        match &self.revision {
            Some(rev) => Repo::with_revision(self.repo.clone(), RepoType::Model, rev.clone()),
            None => Repo::model(self.repo.clone()),
        }
    }
}

/// True when `HF_HUB_OFFLINE` is set to a true value, as huggingface_hub reads it.
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The Hub cache as Python's huggingface_hub finds it: `HF_HUB_CACHE`, else `HF_HOME/hub`,
/// else `~/.cache/huggingface/hub`.
fn cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) if !dir.is_empty() => Cache::new(PathBuf::from(dir)),
        _ => Cache::from_env(),
    }
}

/// Local path of the spec's file: from the cache, else downloaded into it (unless offline).
pub(crate) fn resolve(spec: &HubSpec) -> Result<PathBuf, Vgg16Error> {
    let cache = cache();
    if let Some(path) = cache.repo(spec.hub_repo()).get(&spec.file) {
        tracing::debug!("{}: {} found in the Hub cache", spec.repo, spec.file);
        return Ok(path);
    }
    let err = |reason: String| Vgg16Error::Hub {
        repo: spec.repo.clone(),
        reason,
    };
    if offline() {
        return Err(err(format!(
            "`{}` is not in the Hub cache at {} and HF_HUB_OFFLINE is set; fetch it once with \
             network access or unset HF_HUB_OFFLINE",
            spec.file,
            cache.path().display()
        )));
    }
    let mut builder = ApiBuilder::from_env();
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|d| !d.is_empty()) {
        builder = builder.with_cache_dir(PathBuf::from(dir));
    }
    let api = builder.build().map_err(|e| err(e.to_string()))?;
    tracing::info!("downloading {} from {}", spec.file, spec.repo);
    api.repo(spec.hub_repo())
        .get(&spec.file)
        .map_err(|e| err(format!("downloading `{}`: {e}", spec.file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let s = HubSpec::parse("timm/vgg16.tv_in1k").unwrap();
        assert_eq!(s.repo, "timm/vgg16.tv_in1k");
        assert_eq!(s.revision, None);
        assert_eq!(s.file, DEFAULT_FILE);
        let s = HubSpec::parse("a/b@v1.0:w.safetensors").unwrap();
        assert_eq!(
            (s.repo.as_str(), s.revision.as_deref(), s.file.as_str()),
            ("a/b", Some("v1.0"), "w.safetensors")
        );
        assert!(HubSpec::parse("vgg16").is_err());
        assert!(HubSpec::parse("a/b/c").is_err());
    }
}
