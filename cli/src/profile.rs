//! Profiles: named connection settings in a TOML file, so that `taskloom
//! --profile prod runs list` needs no address, key or TLS flags. Flags and
//! variables override what the profile says.
//!
//! The file is `$TASKLOOM_CONFIG`, or `cli.toml` in the `taskloom` folder of
//! the user's config directory (`$XDG_CONFIG_HOME`, else `~/.config`):
//!
//! ```toml
//! default_profile = "local"
//!
//! [profiles.local]
//! address = "http://127.0.0.1:50051"
//!
//! [profiles.prod]
//! address = "https://taskloom.example.com:50051"
//! api_key_file = "prod.key"        # relative to this file's folder
//! namespace = "team-a"
//! tls_ca = "/etc/taskloom/ca.pem"
//! tls_domain = "taskloom.internal"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The profile used when none is named.
    #[serde(default)]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One profile. Every field is optional; relative paths are relative to the
/// config file's folder, and `~/` is the home folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub address: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub namespace: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_domain: Option<String>,
}

/// Where the config file is looked for.
pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TASKLOOM_CONFIG").filter(|path| !path.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    use etcetera::BaseStrategy;
    let base = etcetera::choose_base_strategy()
        .context("no home folder to find the CLI config file in (set TASKLOOM_CONFIG)")?;
    Ok(base.config_dir().join("taskloom").join("cli.toml"))
}

/// The profile to use: `requested` (from `--profile`/`TASKLOOM_PROFILE`),
/// else the file's `default_profile`, else none. A requested profile the
/// file does not have (or a missing file) is an error; a missing file with
/// nothing requested is not.
pub fn load(requested: Option<&str>) -> anyhow::Result<Option<Profile>> {
    let path = config_path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return match requested {
                Some(name) => Err(anyhow::anyhow!(
                    "profile {name}: there is no config file {}",
                    path.display()
                )),
                None => Ok(None),
            };
        }
        Err(error) => {
            return Err(error).with_context(|| format!("read the config file {}", path.display()));
        }
    };
    let file: ConfigFile =
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
    if file
        .profiles
        .values()
        .any(|profile| profile.api_key.is_some())
    {
        check_private(&path, "holds an api_key")?;
    }
    let Some(name) = requested.or(file.default_profile.as_deref()) else {
        return Ok(None);
    };
    let Some(profile) = file.profiles.get(name) else {
        let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
        anyhow::bail!(
            "no profile {name} in {} (it has: {})",
            path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(Some(profile.relative_to(base)))
}

impl Profile {
    /// The profile with its paths made absolute from `base` (the config
    /// file's folder) and `~/` expanded.
    pub fn relative_to(&self, base: &Path) -> Profile {
        let resolve = |path: &PathBuf| expand(path, base);
        Profile {
            api_key_file: self.api_key_file.as_ref().map(resolve),
            tls_ca: self.tls_ca.as_ref().map(resolve),
            ..self.clone()
        }
    }
}

fn expand(path: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Ok(home) = etcetera::home_dir()
    {
        return home.join(rest);
    }
    base.join(path)
}

/// Refuses a file others may read (it holds a secret); warns when its group
/// may. On systems without Unix permissions nothing is checked.
pub fn check_private(path: &Path, what: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("read {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o007 != 0 {
            anyhow::bail!(
                "{} {what} and other users may read it (mode {:o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        if mode & 0o070 != 0 {
            eprintln!(
                "taskloom: warning: {} {what} and its group may read it (mode {:o}); `chmod 600` it",
                path.display(),
                mode & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// Reads an API key file: its first non-empty line, trimmed.
pub fn read_key_file(path: &Path) -> anyhow::Result<String> {
    check_private(path, "holds an API key")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the API key file {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
        .with_context(|| format!("the API key file {} is empty", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_paths_resolve() {
        let file: ConfigFile = toml::from_str(
            r#"
            default_profile = "prod"
            [profiles.prod]
            address = "https://prod:50051"
            api_key_file = "prod.key"
            tls_ca = "/etc/ca.pem"
            [profiles.local]
            "#,
        )
        .unwrap();
        assert_eq!(file.default_profile.as_deref(), Some("prod"));
        let prod = file.profiles["prod"].relative_to(Path::new("/home/me/.config/taskloom"));
        assert_eq!(
            prod.api_key_file.as_deref(),
            Some(Path::new("/home/me/.config/taskloom/prod.key"))
        );
        assert_eq!(prod.tls_ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(file.profiles["local"], Profile::default());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = toml::from_str::<ConfigFile>("[profiles.a]\nadress = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("adress"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "\n  tlk_secret  \n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_key_file(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), "tlk_secret");
    }
}
