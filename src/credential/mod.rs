//! Certificates as Open Badges 3.0 credentials (SPEC §5): an `OpenBadgeCredential`
//! (VC 2.0 and OB 3.0.3 contexts) issued by the office's `did:web` and signed with a Data
//! Integrity proof, cryptosuite `eddsa-rdfc-2022` (Ed25519 over the SHA-256 hashes of the
//! RDFC-1.0 canonical forms of the proof configuration and the credential).
//!
//! The signing key is an Ed25519 PKCS#8 PEM file (`registrar keygen`), read once when the
//! configuration is loaded; it never appears in a message or a log. Signing and hashing use
//! `ring`, already in the build for TLS. The JSON-LD contexts are in the binary
//! ([`CONTEXTS`]); nothing is fetched.
//!
//! A credential is a pure function of the certificate and the key: the one attached to an
//! email and the one `/verify/{code}/credential` serves are the same bytes (`created` is
//! the issue time), and after a key rotation the served one is signed with the new key
//! while the old key stays in the DID document (`office.retired_public_keys`).

pub mod rdf;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use std::path::Path;

pub const VC_V2: &str = "https://www.w3.org/ns/credentials/v2";
pub const OB_V3: &str = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json";

/// The JSON-LD contexts a registrar credential uses, by URL, as shipped in the binary.
pub const CONTEXTS: [(&str, &str); 2] = [
    (VC_V2, include_str!("contexts/credentials-v2.jsonld")),
    (OB_V3, include_str!("contexts/ob-v3p0-3.0.3.jsonld")),
];

/// What a credential states about one certificate.
#[derive(Debug, Clone)]
pub struct Facts {
    pub verification_code: String,
    pub number: String,
    pub holder: String,
    pub email: Option<String>,
    pub type_id: String,
    pub type_name: String,
    /// The achievement's description and criteria (the course type's, or defaults).
    pub description: String,
    pub criteria: String,
    pub course_start: NaiveDate,
    pub course_end: NaiveDate,
    pub issued_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

/// The achievement's description and criteria of a course type, in `lang` where registrar
/// writes them (the course type's own `description` and `criteria` win).
pub fn achievement_texts(
    course_type: Option<&crate::rules::CourseType>,
    type_name: &str,
    lang: &crate::lang::Lang,
) -> (String, String) {
    let description = course_type
        .and_then(|t| t.description.clone())
        .unwrap_or_else(|| type_name.to_string());
    let percent = course_type.map_or(100, |t| t.attendance_percent);
    let criteria = course_type.and_then(|t| t.criteria.clone()).unwrap_or_else(|| {
        match lang.base().as_str() {
            "nl" => format!(
                "Heeft de cursus {type_name} afgerond: ten minste {percent}% van de lesdelen bijgewoond en behaald wat behaald moest worden."
            ),
            _ => format!(
                "Completed the course {type_name}: attended at least {percent}% of its sessions and passed what had to be passed."
            ),
        }
    });
    (description, criteria)
}

/// The facts of the certificate in a message's template context (the credential attached
/// to an email).
pub fn facts_of_context(
    ctx: &Value,
    course_type: Option<&crate::rules::CourseType>,
    office_lang: &crate::lang::Lang,
) -> Result<Facts, String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let cert = &ctx["certificate"];
    let code = text(&cert["verification_code"]);
    if code.is_empty() {
        return Err("credential: the participant holds no certificate in force".into());
    }
    let moment = |v: &Value| -> Result<Option<DateTime<chrono::FixedOffset>>, String> {
        let s = v.as_str().unwrap_or_default();
        if s.is_empty() {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(s)
            .map(Some)
            .map_err(|_| format!("credential: {s:?} is not a time"))
    };
    let required = |v: &Value, what: &str| {
        moment(v)?.ok_or_else(|| format!("credential: the context has no {what}"))
    };
    let type_name = text(&ctx["course"]["type_name"]);
    let (description, criteria) = achievement_texts(course_type, &type_name, office_lang);
    let email = text(&ctx["participant"]["email"]);
    Ok(Facts {
        verification_code: code,
        number: text(&cert["number"]),
        holder: text(&ctx["participant"]["full_name"]),
        email: Some(email).filter(|e| !e.is_empty()),
        type_id: text(&ctx["course"]["type"]),
        type_name,
        description,
        criteria,
        course_start: required(&ctx["course"]["start"], "course start")?.date_naive(),
        course_end: required(&ctx["course"]["end"], "course end")?.date_naive(),
        issued_at: required(&cert["issued_at"], "issue time")?.with_timezone(&Utc),
        valid_until: moment(&cert["valid_until_at"])?.map(|t| t.with_timezone(&Utc)),
    })
}

/// The office's signing key and the identity it signs as.
pub struct Signer {
    pair: ring::signature::Ed25519KeyPair,
    public: String,
    did: String,
    base_url: String,
    office: String,
    retired: Vec<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        write!(f, "Signer({} {})", self.did, self.public)
    }
}

impl Signer {
    /// Reads the key file; `base_url` (office.verify_base_url) gives the `did:web`, and
    /// `retired` lists earlier public keys whose credentials still verify.
    pub fn load(
        path: &Path,
        base_url: &str,
        office: &str,
        retired: Vec<String>,
    ) -> Result<Signer, String> {
        let shown = path.display();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o004 != 0
            {
                return Err(format!(
                    "{shown} is readable by every user of this machine (mode {:o}); it is the office's signing key: chmod 600 {shown}",
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{shown} does not exist (write one with `registrar keygen {shown}`)")
            } else {
                format!("{shown} cannot be read: {e}")
            }
        })?;
        let pair = pem_key(&text).ok_or_else(|| {
            format!(
                "{shown} is not an Ed25519 private key (expected a PKCS#8 PEM file as `registrar keygen` writes)"
            )
        })?;
        for (i, r) in retired.iter().enumerate() {
            if public_key_bytes(r).is_none() {
                return Err(format!(
                    "office.retired_public_keys[{i}]: {r:?} is not an Ed25519 public key (z6Mk…, as `registrar keygen` prints)"
                ));
            }
        }
        let public = multikey(ring::signature::KeyPair::public_key(&pair).as_ref());
        Ok(Signer {
            pair,
            did: did_web(base_url)?,
            base_url: base_url.trim_end_matches('/').to_string(),
            office: office.to_string(),
            retired: retired.into_iter().filter(|r| *r != public).collect(),
            public,
        })
    }

    pub fn did(&self) -> &str {
        &self.did
    }

    /// The public key, multibase (`z6Mk…`).
    pub fn public_key(&self) -> &str {
        &self.public
    }

    fn method(&self, public: &str) -> String {
        format!("{}#{public}", self.did)
    }

    /// The office's DID document: the key in force and the retired ones, each a Multikey
    /// allowed to assert credentials.
    pub fn did_document(&self) -> Value {
        let keys: Vec<&str> = std::iter::once(self.public.as_str())
            .chain(self.retired.iter().map(String::as_str))
            .collect();
        json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did,
            "verificationMethod": keys.iter().map(|k| json!({
                "id": self.method(k), "type": "Multikey", "controller": self.did, "publicKeyMultibase": k,
            })).collect::<Vec<_>>(),
            "assertionMethod": keys.iter().map(|k| self.method(k)).collect::<Vec<_>>(),
        })
    }

    /// The signed `OpenBadgeCredential` of a certificate.
    pub fn credential(&self, f: &Facts) -> Result<Value, String> {
        let mut doc = unsigned(f, &self.did, &self.office, &self.base_url);
        let stamp = f.issued_at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut proof = json!({
            "type": "DataIntegrityProof",
            "cryptosuite": "eddsa-rdfc-2022",
            "created": stamp,
            "verificationMethod": self.method(&self.public),
            "proofPurpose": "assertionMethod",
        });
        let mut config = proof.clone();
        config["@context"] = doc["@context"].clone();
        let config_hash = rdf::sha256(rdf::canonical_nquads(&config)?.as_bytes());
        let doc_hash = rdf::sha256(rdf::canonical_nquads(&doc)?.as_bytes());
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&config_hash);
        data.extend_from_slice(&doc_hash);
        let signature = self.pair.sign(&data);
        proof["proofValue"] = json!(format!("z{}", base58(signature.as_ref())));
        doc["proof"] = proof;
        Ok(doc)
    }
}

/// The credential without its proof.
fn unsigned(f: &Facts, did: &str, office: &str, base_url: &str) -> Value {
    let stamp = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut identifiers = Vec::new();
    if let Some(email) = f.email.as_deref().filter(|e| !e.is_empty()) {
        // Salted, so the credential does not disclose the address; whoever knows it can
        // check it (OB 3.0 IdentityObject).
        let salt = rdf::hex(&rdf::sha256(
            format!("salt:{}", f.verification_code).as_bytes(),
        ))[..16]
            .to_string();
        let hash = rdf::hex(&rdf::sha256(
            format!("{}{salt}", email.trim().to_lowercase()).as_bytes(),
        ));
        identifiers.push(
            json!({"type": "IdentityObject", "identityHash": format!("sha256${hash}"),
            "identityType": "emailAddress", "hashed": true, "salt": salt}),
        );
    }
    identifiers.push(json!({"type": "IdentityObject", "identityHash": f.holder,
        "identityType": "name", "hashed": false}));
    let mut doc = json!({
        "@context": [VC_V2, OB_V3],
        "id": format!("{base_url}/verify/{}", f.verification_code),
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": f.type_name,
        "issuer": {"id": did, "type": ["Profile"], "name": office},
        "validFrom": stamp(f.issued_at),
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "identifier": identifiers,
            "licenseNumber": f.number,
            "activityStartDate": f.course_start.format("%Y-%m-%d").to_string(),
            "activityEndDate": f.course_end.format("%Y-%m-%d").to_string(),
            "achievement": {
                "id": format!("{base_url}/achievements/{}", percent_encode(&f.type_id)),
                "type": ["Achievement"],
                "achievementType": "Certificate",
                "name": f.type_name,
                "description": f.description,
                "criteria": {"narrative": f.criteria},
            },
        },
    });
    if let Some(until) = f.valid_until {
        doc["validUntil"] = json!(stamp(until));
    }
    doc
}

/// `did:web` of a base URL: `https://training.example.org` -> `did:web:training.example.org`,
/// a port as `%3A`, path segments joined with `:` (resolved at `/PATH/did.json`).
pub fn did_web(base_url: &str) -> Result<String, String> {
    let rest = base_url
        .strip_prefix("https://")
        .or_else(|| base_url.strip_prefix("http://"))
        .ok_or_else(|| format!("office.verify_base_url {base_url:?} is not an http(s) URL"))?;
    let mut parts = rest.trim_end_matches('/').split('/');
    let host = parts.next().unwrap_or_default().to_ascii_lowercase();
    if host.is_empty() || host.contains('@') {
        return Err(format!(
            "office.verify_base_url {base_url:?} names no host for the office's did:web"
        ));
    }
    let mut did = format!("did:web:{}", host.replace(':', "%3A"));
    for segment in parts.filter(|s| !s.is_empty()) {
        did.push(':');
        did.push_str(&percent_encode(segment));
    }
    Ok(did)
}

/// Writes a new Ed25519 key to `path` (mode 0600; never over an existing file) and
/// returns its public key, multibase.
pub fn keygen(path: &Path) -> Result<String, String> {
    use std::io::Write;
    let rng = ring::rand::SystemRandom::new();
    let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| "the system's random source failed".to_string())?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .map_err(|_| "the new key could not be read back".to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let shown = path.display();
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{shown} already exists; registrar never overwrites a key (credentials signed with it would stop verifying). Choose another path to rotate (see README, \"Signing key\")."
            )
        } else {
            format!("{shown}: cannot create the key file: {e}")
        }
    })?;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{shown}: cannot write the key: {e}"))?;
    Ok(multikey(
        ring::signature::KeyPair::public_key(&pair).as_ref(),
    ))
}

/// The public key (multibase) of a key file.
pub fn public_key_of(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown} cannot be read: {e}"))?;
    let pair = pem_key(&text)
        .ok_or_else(|| format!("{shown} is not an Ed25519 private key (PKCS#8 PEM)"))?;
    Ok(multikey(
        ring::signature::KeyPair::public_key(&pair).as_ref(),
    ))
}

fn pem_key(text: &str) -> Option<ring::signature::Ed25519KeyPair> {
    use base64::Engine;
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PRIVATE KEY-----")
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).ok()
}

/// An Ed25519 public key as a Multikey: `z` + base58btc(0xed 0x01 + key).
fn multikey(public: &[u8]) -> String {
    let mut bytes = vec![0xed, 0x01];
    bytes.extend_from_slice(public);
    format!("z{}", base58(&bytes))
}

/// The 32 key bytes of a Multikey, if it is one.
fn public_key_bytes(multibase: &str) -> Option<Vec<u8>> {
    let bytes = unbase58(multibase.strip_prefix('z')?)?;
    match bytes.as_slice() {
        [0xed, 0x01, key @ ..] if key.len() == 32 => Some(key.to_vec()),
        _ => None,
    }
}

/// LinkedIn's "add to profile" URL of a certificate: the certification's name, the office
/// (by organisation id when configured, else by name), issue and expiry month, the verify
/// URL and the number.
pub fn linkedin_url(
    certification_name: &str,
    office: &crate::config::Office,
    issued: NaiveDate,
    valid_until: Option<NaiveDate>,
    verify_url: &str,
    number: &str,
) -> String {
    use chrono::Datelike;
    let mut query = vec![
        ("startTask", "CERTIFICATION_NAME".to_string()),
        ("name", certification_name.to_string()),
    ];
    match &office.linkedin_organization_id {
        Some(id) => query.push(("organizationId", id.clone())),
        None => query.push(("organizationName", office.name.clone())),
    }
    query.push(("issueYear", issued.year().to_string()));
    query.push(("issueMonth", issued.month().to_string()));
    if let Some(u) = valid_until {
        query.push(("expirationYear", u.year().to_string()));
        query.push(("expirationMonth", u.month().to_string()));
    }
    query.push(("certUrl", verify_url.to_string()));
    query.push(("certId", number.to_string()));
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    format!("https://www.linkedin.com/profile/add?{}", pairs.join("&"))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (for URL query
/// values and path segments).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bitcoin's base58.
pub fn base58(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = "1".repeat(zeros);
    out.extend(
        digits
            .iter()
            .rev()
            .map(|d| char::from(ALPHABET[usize::from(*d)])),
    );
    out
}

fn unbase58(s: &str) -> Option<Vec<u8>> {
    let zeros = s.bytes().take_while(|c| *c == b'1').count();
    let mut bytes: Vec<u8> = Vec::new();
    for c in s.bytes() {
        let mut carry = ALPHABET.iter().position(|a| *a == c)? as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_round_trips_and_keeps_leading_zeros() {
        for bytes in [
            vec![],
            vec![0],
            vec![0, 0, 1, 2],
            vec![0xed, 0x01, 255, 7],
            (0..64).collect(),
        ] {
            assert_eq!(unbase58(&base58(&bytes)), Some(bytes));
        }
        assert_eq!(base58(b"hello world"), "StV1DL6CwTryKyV");
    }

    #[test]
    fn did_web_follows_the_method_for_hosts_ports_and_paths() {
        assert_eq!(
            did_web("https://training.example.org").as_deref(),
            Ok("did:web:training.example.org")
        );
        assert_eq!(
            did_web("http://127.0.0.1:8080").as_deref(),
            Ok("did:web:127.0.0.1%3A8080")
        );
        assert_eq!(
            did_web("https://example.org/opleidingen/").as_deref(),
            Ok("did:web:example.org:opleidingen")
        );
        assert!(did_web("https://").is_err());
    }

    #[test]
    fn keygen_writes_a_private_file_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("office.key");
        let public = keygen(&path).expect("keygen");
        assert!(public.starts_with("z6Mk"), "{public}");
        assert_eq!(public_key_of(&path).as_deref(), Ok(public.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = keygen(&path).expect_err("exists");
        assert!(again.contains("already exists"), "{again}");
        assert_eq!(public_key_of(&path).as_deref(), Ok(public.as_str()));
        let signer = Signer::load(&path, "https://o.example.org", "Office", vec![]).expect("load");
        assert_eq!(signer.public_key(), public);
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }
}
