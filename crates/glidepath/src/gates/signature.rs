//! `[gates.signature]`: the artifact carries a minisign signature by one of
//! the trusted keys (for a directory, over its sha256sum manifest).

use super::{one_table, Context, GateResult, Reading, Verdict};
use std::path::{Path, PathBuf};
use toml_span::value::Table;

/// `[gates.signature]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignatureGate {
    /// Trusted minisign public keys (base64).
    pub trusted_keys: Vec<String>,
    /// The signature file; empty: the artifact's path + `.minisig`.
    pub file: PathBuf,
}

/// How a directory artifact is turned into the bytes its signature covers
/// (its sha256sum manifest: `plan::dir_manifest`), given by the caller so
/// that the gates do not depend on the plan module.
pub type Manifest = fn(&Path) -> std::io::Result<String>;

/// Read `[gates.signature]`.
pub(super) fn read(r: &mut dyn Reading, t: &Table<'_>, dir: &Path) -> Option<SignatureGate> {
    let (st, sat) = one_table(r, t, "signature")?;
    r.known_keys(st, "[gates.signature]", &["trusted_keys", "file"]);
    let keys = r
        .str_list(st, "trusted_keys", "[\"RWQ…\"]")
        .unwrap_or_default();
    if keys.is_empty() {
        r.missing(sat, "[gates.signature]", "trusted_keys", "[\"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"]  # minisign public keys");
    }
    for (k, s) in &keys {
        if minisign_verify::PublicKey::from_base64(k).is_err() {
            r.err(
                *s,
                "not a minisign public key",
                "expected the base64 line of a .pub file",
                Some("the second line of `minisign -G`'s minisign.pub".into()),
            );
        }
    }
    let file = r
        .str(st, "file", "\"dist/api-1.0.10.minisig\"")
        .map(|x| dir.join(x.0))
        .unwrap_or_default();
    Some(SignatureGate {
        trusted_keys: keys.into_iter().map(|x| x.0).collect(),
        file,
    })
}

/// The signature gate.
pub(super) async fn check(g: &SignatureGate, cx: &Context<'_>) -> Vec<GateResult> {
    let artifact = cx.inputs.artifact.as_path();
    let file = if g.file.as_os_str().is_empty() {
        PathBuf::from(format!("{}.minisig", artifact.display()))
    } else {
        g.file.clone()
    };
    vec![verify_signature(
        artifact,
        &file,
        &g.trusted_keys,
        cx.inputs.manifest,
    )]
}

/// The key ID of a minisign key or signature line (base64): bytes 2..10,
/// shown like minisign does.
pub fn key_id(b64: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let id: [u8; 8] = raw.get(2..10)?.try_into().ok()?;
    Some(format!("{:016X}", u64::from_le_bytes(id)))
}

/// What a signature covers: a file's bytes, or a directory's sha256sum
/// manifest (the text whose sha256 is the plan's `sha256`).
pub fn signed_bytes(artifact: &Path, manifest: Manifest) -> std::io::Result<Vec<u8>> {
    if artifact.is_file() {
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut crate::files::open_regular_following(artifact)?,
            &mut out,
        )?;
        Ok(out)
    } else {
        Ok(manifest(artifact)?.into_bytes())
    }
}

/// Verify an artifact's minisign signature against trusted keys.
pub fn verify_signature(
    artifact: &Path,
    sig_file: &Path,
    trusted: &[String],
    manifest: Manifest,
) -> GateResult {
    let fail = |why: String, fix: &str| GateResult::new("signature", Verdict::Fail, why, Some(fix));
    let text = match crate::files::read_text(sig_file, 64 * 1024) {
        Ok(t) => t,
        Err(e) => return fail(format!("no signature at {}: {e}", sig_file.display()), "sign the artifact: minisign -Sm ARTIFACT (for a directory, sign its sha256sum manifest)"),
    };
    let sig = match minisign_verify::Signature::decode(&text) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                format!("{} is not a minisign signature: {e}", sig_file.display()),
                "re-create it with minisign -S",
            )
        }
    };
    let sig_id = text
        .lines()
        .nth(1)
        .and_then(key_id)
        .unwrap_or_else(|| "?".into());
    let Some(key) = trusted
        .iter()
        .find(|k| key_id(k).as_deref() == Some(sig_id.as_str()))
    else {
        let known: Vec<String> = trusted.iter().filter_map(|k| key_id(k)).collect();
        return fail(
            format!(
                "signed by unknown key ID {sig_id} (trusted: {})",
                known.join(", ")
            ),
            "sign with a trusted key, or add this key to trusted_keys after checking it",
        );
    };
    let data = match signed_bytes(artifact, manifest) {
        Ok(d) => d,
        Err(e) => {
            return fail(
                format!("cannot read {}: {e}", artifact.display()),
                "check the artifact path",
            )
        }
    };
    let pk = minisign_verify::PublicKey::from_base64(key).expect("validated");
    match pk.verify(&data, &sig, false) {
        Ok(()) => GateResult::new("signature", Verdict::Pass, format!("signed by trusted key ID {sig_id} (\"{}\")", sig.trusted_comment()), None),
        Err(e) => fail(format!("signature by key ID {sig_id} does not match the artifact ({e}): it was changed after signing"), "use the signed artifact"),
    }
}
