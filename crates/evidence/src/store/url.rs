//! Store URLs: `sqlite://DIR` or `postgres://...` (with an optional namespace for schemas).

use std::path::PathBuf;

use super::{StoreError, StoreName};

/// Where the stores live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// One SQLite file per store in `dir`.
    Sqlite { dir: PathBuf },
    /// One schema per store in one PostgreSQL database; `namespace` prefixes schema names.
    Postgres {
        url: String,
        namespace: Option<String>,
    },
}

impl StoreUrl {
    /// Parses `sqlite://DIR` or `postgres://...` / `postgresql://...`.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: mask_password(text),
            reason: reason.to_string(),
        };
        if let Some(rest) = text.strip_prefix("sqlite://") {
            let dir = rest.split('?').next().unwrap_or_default();
            if dir.is_empty() {
                return Err(bad("the directory is missing after sqlite://"));
            }
            if dir.ends_with(".db") || dir.ends_with(".sqlite") {
                return Err(bad(
                    "give a directory, not a file: each store gets its own file inside it",
                ));
            }
            return Ok(Self::Sqlite {
                dir: PathBuf::from(dir),
            });
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let after_scheme = text.split_once("://").map(|(_, rest)| rest).unwrap_or("");
            let host_part = after_scheme.rsplit('@').next().unwrap_or("");
            if host_part.is_empty() || host_part.starts_with('/') {
                return Err(bad("the host is missing"));
            }
            return Ok(Self::Postgres {
                url: text.to_string(),
                namespace: None,
            });
        }
        Err(bad("unknown scheme"))
    }

    /// The same location with schema names prefixed by `namespace` (PostgreSQL only; SQLite
    /// locations are directories and need no namespace).
    pub fn with_namespace(self, namespace: &str) -> Self {
        match self {
            Self::Postgres { url, .. } => Self::Postgres {
                url,
                namespace: Some(namespace.to_string()),
            },
            other => other,
        }
    }

    /// The prefix of the schema names (PostgreSQL with a namespace), if any.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Self::Postgres { namespace, .. } => namespace.as_deref(),
            Self::Sqlite { .. } => None,
        }
    }

    /// The location as [`StoreUrl::parse`] reads it, password included and without the
    /// namespace: for handing the stores to another process (through its environment, not
    /// its command line, which any local user can read).
    pub fn to_url(&self) -> String {
        match self {
            Self::Sqlite { dir } => format!("sqlite://{}", dir.display()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    /// The PostgreSQL schema for a store, `None` for SQLite.
    pub fn schema(&self, name: StoreName) -> Option<String> {
        match self {
            Self::Postgres {
                namespace: Some(ns),
                ..
            } => Some(format!("{ns}_{}", name.as_str())),
            Self::Postgres {
                namespace: None, ..
            } => Some(name.as_str().to_string()),
            Self::Sqlite { .. } => None,
        }
    }

    /// A human-readable location for one store, password masked.
    pub fn describe(&self, name: StoreName) -> String {
        match self {
            Self::Sqlite { dir } => format!("{}/{}.db", dir.display(), name.as_str()),
            Self::Postgres { url, .. } => format!(
                "{} (schema {})",
                mask_password(url),
                self.schema(name).unwrap_or_default()
            ),
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { dir } => write!(f, "sqlite://{}", dir.display()),
            Self::Postgres { url, namespace } => {
                write!(f, "{}", mask_password(url))?;
                if let Some(ns) = namespace {
                    write!(f, " (namespace {ns})")?;
                }
                Ok(())
            }
        }
    }
}

/// Replaces the password of a URL's user-info with `***`.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both schemes parse; files, empty paths and unknown schemes are refused with a reason.
    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            StoreUrl::parse("sqlite://runs/x/stores").unwrap(),
            StoreUrl::Sqlite {
                dir: PathBuf::from("runs/x/stores")
            }
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/abs").unwrap(),
            StoreUrl::Sqlite {
                dir: PathBuf::from("/tmp/abs")
            }
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u:p@h:5432/db").unwrap(),
            StoreUrl::Postgres { .. }
        ));
        for bad in [
            "sqlite://",
            "sqlite://x.db",
            "mysql://h/db",
            "postgres:///db",
            "nonsense",
        ] {
            let err = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(err.contains("sqlite://DIR"), "{bad}: {err}");
        }
    }

    /// Passwords never appear in messages.
    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_password("postgres://app:s3cret@db:5432/rig"),
            "postgres://app:***@db:5432/rig"
        );
        assert_eq!(
            mask_password("postgres://app@db/rig"),
            "postgres://app@db/rig"
        );
        let err = StoreUrl::parse("mysql://app:s3cret@db/rig")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    /// Namespaces prefix schema names so runs and tests can share one database.
    #[test]
    fn namespaces_prefix_schemas() {
        let url = StoreUrl::parse("postgres://h/db")
            .unwrap()
            .with_namespace("t1");
        assert_eq!(
            url.schema(StoreName::Provider).as_deref(),
            Some("t1_provider")
        );
        let plain = StoreUrl::parse("postgres://h/db").unwrap();
        assert_eq!(
            plain.schema(StoreName::Provider).as_deref(),
            Some("provider")
        );
    }
}
