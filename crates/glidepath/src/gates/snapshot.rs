//! What a run records before any node changes: the sha256 of each config
//! file of `[gates.config]`, and a keyed fingerprint (or, for `env_clear`
//! names, the value) of each env name: the journal never holds a secret.

use super::config::{files, ConfigGate};
use super::Inputs;
use std::path::{Path, PathBuf};

/// (label, value) pairs.
pub type Pairs = Vec<(String, String)>;

/// The snapshot recorded before a run: the sha256 of each config file, and
/// for each env name of `[gates.config] env` a keyed fingerprint of its
/// value ([`FingerprintKey`]), or the value itself for the names listed in
/// `env_clear`. An unset name is `<unset>`. No other value ever reaches
/// the journal: when the key cannot be read or created, the value is
/// recorded as `<not recorded: …>`.
pub fn snapshot(config: Option<&ConfigGate>, inputs: &Inputs) -> (Pairs, Pairs) {
    use sha2::{Digest, Sha256};
    let hashes = config
        .map(|c| files(c, inputs))
        .unwrap_or_default()
        .into_iter()
        .map(|(label, p)| {
            (
                label,
                crate::files::read_bounded(&p, crate::files::SMALL_MAX)
                    .map(|b| hex::encode(Sha256::digest(&b)))
                    .unwrap_or_else(|e| format!("unreadable: {e}")),
            )
        })
        .collect();
    let env = match config {
        Some(c) if !c.env.is_empty() => {
            // the key is only needed when a value is to be fingerprinted
            let needs_key = c
                .env
                .iter()
                .any(|n| !c.env_clear.contains(n) && std::env::var_os(n).is_some());
            let key = if needs_key {
                FingerprintKey::for_user()
            } else {
                Err("not needed".into())
            };
            snapshot_env(&c.env, &c.env_clear, key.as_ref(), |n| std::env::var_os(n))
        }
        _ => vec![],
    };
    (hashes, env)
}

/// The env half of [`snapshot`], with the key and the environment given.
pub fn snapshot_env(
    names: &[String],
    clear: &[String],
    key: Result<&FingerprintKey, &String>,
    get: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Pairs {
    use std::os::unix::ffi::OsStrExt;
    names
        .iter()
        .map(|n| {
            let v = match get(n) {
                None => "<unset>".to_string(),
                Some(v) if clear.contains(n) => v.to_string_lossy().into_owned(),
                Some(v) => match key {
                    Ok(k) => k.fingerprint(n, v.as_bytes()),
                    Err(why) => format!("<not recorded: {why}>"),
                },
            };
            (n.clone(), v)
        })
        .collect()
}

/// HMAC-SHA256 (RFC 2104) over sha2.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The secret key of env fingerprints: 32 random bytes kept in a 0600 file
/// of the user's state directory, never in the journal. A fingerprint is
/// `hmac-sha256:<key id>:<HMAC-SHA256(key, NAME \0 value)>`: the same value
/// of the same name gives the same fingerprint on this machine (a change
/// between runs shows), and someone who reads only the journal cannot test
/// guesses of a short secret against it. The key id (a hash of the key)
/// tells which key made a fingerprint, so a changed key is not mistaken
/// for a changed value.
#[derive(Clone)]
pub struct FingerprintKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FingerprintKey({})", self.id)
    }
}

/// The user's state directory for glidepath: `$XDG_STATE_HOME/glidepath`,
/// else `$HOME/.local/state/glidepath`.
pub fn state_dir() -> Result<PathBuf, String> {
    crate::files::state_dir().ok_or_else(|| "no state directory: set XDG_STATE_HOME or HOME".into())
}

impl FingerprintKey {
    pub const FILE: &'static str = "fingerprint.key";

    fn from_bytes(key: [u8; 32]) -> Self {
        let id = hex::encode(&hmac_sha256(&key, b"glidepath fingerprint key id")[..4]);
        FingerprintKey { key, id }
    }

    /// The key of this user on this machine (created on first use).
    pub fn for_user() -> Result<Self, String> {
        Self::load_or_create(&state_dir()?.join(Self::FILE))
    }

    /// Read the key at `path`, or create it (0600, in a 0700 directory).
    /// A key file that others may read is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        use std::io::{Read, Write};
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let shown = path.display();
        if !path.exists() {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
            // written aside, then linked into place: a concurrent run sees
            // either no key or the whole key, and the first one wins
            let tmp = dir.join(format!(".{}.{}.tmp", Self::FILE, std::process::id()));
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| {
                    f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
                    f.sync_all()
                });
            let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            });
            let _ = std::fs::remove_file(&tmp);
            linked.map_err(|e| format!("cannot create {shown}: {e}"))?;
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown} may be read by others (mode {mode:o}): chmod 600 it"
            ));
        }
        let text = crate::files::read_text(path, 4096).map_err(|e| format!("{shown}: {e}"))?;
        let key: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!("{shown} is not a fingerprint key (64 hex digits); remove it to create a new one")
            })?;
        Ok(Self::from_bytes(key))
    }

    /// The fingerprint of `name`'s value.
    pub fn fingerprint(&self, name: &str, value: &[u8]) -> String {
        let mut msg = Vec::with_capacity(name.len() + 1 + value.len());
        msg.extend_from_slice(name.as_bytes());
        msg.push(0);
        msg.extend_from_slice(value);
        format!(
            "hmac-sha256:{}:{}",
            self.id,
            hex::encode(hmac_sha256(&self.key, &msg))
        )
    }
}

/// Does an env var name look like it holds a secret?
pub fn secret_looking(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
        "AUTH",
    ]
    .iter()
    .any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // test case 1
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // test case 2
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // test case 6: a key longer than the block
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_fingerprint_key_is_created_once_private_and_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp
            .path()
            .join("state/glidepath")
            .join(FingerprintKey::FILE);
        let a = FingerprintKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is private");
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let b = FingerprintKey::load_or_create(&path).unwrap();
        assert_eq!(a.key, b.key, "the same key on the next run");
        assert_eq!(a.fingerprint("X", b"v"), b.fingerprint("X", b"v"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = FingerprintKey::load_or_create(&path).unwrap_err();
        assert!(
            e.contains("may be read by others") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short\n").unwrap();
        let e = FingerprintKey::load_or_create(&path).unwrap_err();
        assert!(e.contains("not a fingerprint key"), "{e}");
    }

    #[test]
    fn env_values_are_fingerprinted_unless_marked_clear() {
        let secrets = [
            ("DB_PASS", "hunter2"),
            ("DATABASE_URL", "postgres://app:pw@db/app"),
            ("SENTRY_DSN", "https://abc@sentry.example/1"),
            ("APP_SESSION_COOKIE", "c00kie"),
        ];
        let names: Vec<String> = secrets
            .iter()
            .map(|x| x.0.to_string())
            .chain(["LOG_LEVEL".to_string(), "UNSET_ONE".to_string()])
            .collect();
        let clear = vec!["LOG_LEVEL".to_string()];
        let key = FingerprintKey::from_bytes([7; 32]);
        let env = |overrides: &[(&str, &str)]| {
            let mut m: std::collections::HashMap<String, String> = secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.insert("LOG_LEVEL".into(), "debug".into());
            for (k, v) in overrides {
                m.insert(k.to_string(), v.to_string());
            }
            move |n: &str| m.get(n).map(std::ffi::OsString::from)
        };
        let one = snapshot_env(&names, &clear, Ok(&key), env(&[]));
        let text = format!("{one:?}");
        for (_, v) in secrets {
            assert!(!text.contains(v), "{v} in clear: {text}");
        }
        for (n, v) in &one[..4] {
            assert!(
                v.starts_with(&format!("hmac-sha256:{}:", key.id)),
                "{n}: {v}"
            );
            assert_eq!(v.len(), "hmac-sha256:".len() + 8 + 1 + 64, "{v}");
        }
        assert_eq!(one[4], ("LOG_LEVEL".into(), "debug".into()));
        assert_eq!(one[5], ("UNSET_ONE".into(), "<unset>".into()));
        // stable: same values, same fingerprints
        assert_eq!(snapshot_env(&names, &clear, Ok(&key), env(&[])), one);
        // a change shows, and only for the changed name
        let two = snapshot_env(&names, &clear, Ok(&key), env(&[("DB_PASS", "hunter3")]));
        assert_ne!(two[0], one[0]);
        assert_eq!(two[1..], one[1..]);
        // the same value under two names gives two fingerprints
        assert_ne!(key.fingerprint("A", b"same"), key.fingerprint("B", b"same"));
        // another key (another machine) cannot be compared, nor guessed without the key
        let other = FingerprintKey::from_bytes([8; 32]);
        assert_ne!(
            snapshot_env(&names, &clear, Ok(&other), env(&[]))[0],
            one[0]
        );
        // no key: nothing recorded, never the value
        let why = "no state directory".to_string();
        let none = snapshot_env(&names, &clear, Err(&why), env(&[]));
        assert_eq!(none[0].1, "<not recorded: no state directory>");
        assert_eq!(none[4].1, "debug");
    }
}
