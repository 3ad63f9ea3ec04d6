//! What the store checks about the server when it connects.

use std::fmt;

/// A Redis server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RedisVersion {
    /// The major version.
    pub major: u32,
    /// The minor version.
    pub minor: u32,
    /// The patch level.
    pub patch: u32,
}

impl RedisVersion {
    /// The oldest server the store works with: 6.2, the first with `ZADD ... GT`.
    pub const MINIMUM: Self = Self {
        major: 6,
        minor: 2,
        patch: 0,
    };

    /// Parses `7.2.4` (missing parts count as 0).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for RedisVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What the store learnt of the server at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's version (6.2 or newer, or the store would not have connected).
    pub version: RedisVersion,
    /// Whether the append-only file is on (`appendonly yes`). Without it, a server crash
    /// loses every write since the last snapshot.
    pub aof_enabled: bool,
}

/// Reads one `field:value` line of an `INFO` answer.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then_some(value.trim())
    })
}

/// Reads the server facts from an `INFO server` + `INFO persistence` answer, refusing a
/// server that is too old.
pub(crate) fn check(info: &str) -> Result<ServerInfo, String> {
    let text = info_field(info, "redis_version")
        .ok_or("the server's INFO has no redis_version: is this Redis?")?;
    let version = RedisVersion::parse(text)
        .ok_or_else(|| format!("cannot read the server's redis_version {text:?}"))?;
    if version < RedisVersion::MINIMUM {
        return Err(format!(
            "Redis {version} is too old: the store needs Redis {} or newer (ZADD GT, LPOS)",
            RedisVersion::MINIMUM
        ));
    }
    Ok(ServerInfo {
        version,
        aof_enabled: info_field(info, "aof_enabled") == Some("1"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = |s| RedisVersion::parse(s).unwrap();
        assert!(v("6.2.0") >= RedisVersion::MINIMUM);
        assert!(v("6.2") >= RedisVersion::MINIMUM);
        assert!(v("7.0.15") > v("6.2.14"));
        assert!(v("6.0.20") < RedisVersion::MINIMUM);
        assert!(v("10.0.0") > v("9.9.9"));
        assert_eq!(v("7.2.4").to_string(), "7.2.4");
        assert_eq!(RedisVersion::parse("seven"), None);
        assert_eq!(RedisVersion::parse(""), None);
    }

    #[test]
    fn info() {
        let new = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n# Persistence\r\naof_enabled:1\r\n";
        assert_eq!(
            check(new).unwrap(),
            ServerInfo {
                version: RedisVersion {
                    major: 7,
                    minor: 0,
                    patch: 15
                },
                aof_enabled: true
            }
        );
        let old = "# Server\r\nredis_version:6.0.9\r\naof_enabled:0\r\n";
        let err = check(old).unwrap_err();
        assert!(
            err.contains("6.0.9 is too old") && err.contains("6.2.0"),
            "{err}"
        );
        assert!(check("# Server\r\n").is_err());
        assert!(
            !check("redis_version:6.2.1\r\naof_enabled:0")
                .unwrap()
                .aof_enabled
        );
    }
}
