//! All of gbdfl's cryptography, and nothing else: the master key, the
//! record key derived from it, the long-lived index and audit keys it wraps,
//! sealing and opening values bound to their row, the blind index of an IIN,
//! the key check value and the audit MAC.
//!
//! Why two kinds of key: records are sealed under a key derived from the
//! master key, so `rekey` really re-encrypts them. The blind-index key and
//! the audit MAC key are random, made once at `init`, and stored only
//! wrapped (sealed) under the master key: `rekey` re-wraps them, so IIN
//! lookups and the audit chain (and the head an auditor wrote down) survive
//! a key rotation.
//!
//! Rules this module keeps: key material is zeroized on drop
//! (`ZeroizeOnDrop`, `Zeroizing`, and aes-gcm's `zeroize` feature for the
//! cipher), has no `Serialize`, and prints as `Name(***)` in Debug
//! (`wrapped_keys_survive_a_new_master_key` checks the master key's); the
//! master key and the long-lived keys have no `Clone` (the derived
//! [`Keys`] are cloned, for worker threads). The byte layouts are those of
//! docs/FORMAT.md, kept by `associated_data_is_the_documented_text`,
//! `sealed_values_have_the_layout_and_nonces_differ_across_threads` and
//! `format::every_record_decrypts_by_hand_following_format_md` in
//! tests/cli (which opens records with the RustCrypto crates alone):
//! change one only together with that document and those tests.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::TryRng as _;
use rand::rngs::SysRng;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the master key and of every subkey, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// First byte of every sealed value: the layout version of docs/FORMAT.md.
pub const SEAL_VERSION: u8 = 1;
/// The HKDF salt, fixed for the format (see docs/FORMAT.md).
pub const HKDF_SALT: &[u8] = b"gbdfl-v1";
/// HKDF info strings, one per subkey.
pub const INFO_ENC: &[u8] = b"gbdfl/v1/encryption";
/// HKDF info of the key-check value, from which the key id is made.
pub const INFO_CHECK: &[u8] = b"gbdfl/v1/key-check";

/// What can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The bytes are not a sealed value of a layout this format knows.
    #[error("sealed value is too short or has an unknown layout version")]
    Malformed,
    #[error(
        "sealed value failed authentication (wrong key, tampered bytes, or moved from another row)"
    )]
    /// AES-GCM refused the value: another key, changed bytes, or other
    /// associated data (a value moved to another row or column).
    Open,
    /// The operating system gave no random bytes (for a key or a nonce).
    #[error("could not gather randomness from the operating system: {0}")]
    Random(String),
}

/// The 256-bit master key. Lives only in memory, zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut k = [0u8; KEY_LEN];
        os_random(&mut k)?;
        Ok(MasterKey(k))
    }

    /// The key with these bytes: what [`crate::keyfile::load`] read, or a
    /// fixed key in tests.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// The raw bytes, for writing the key file only.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn derive(&self, info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        hk.expand(info, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        out
    }

    /// The key check value stored in the database: HKDF output under its own
    /// info string. It reveals nothing of the key and tells a wrong key file
    /// apart before anything is read or written.
    pub fn check_value(&self) -> [u8; KEY_LEN] {
        *self.derive(INFO_CHECK)
    }

    /// The record keys of this master key with the given long-lived keys.
    pub fn keys(&self, stable: &StableKeys) -> Keys {
        Keys {
            cipher: self.cipher(),
            index: Zeroizing::new(*stable.index),
            audit: Zeroizing::new(*stable.audit),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        let enc = self.derive(INFO_ENC);
        Aes256Gcm::new(enc.as_slice().try_into().expect("32-byte key"))
    }

    /// Wraps the long-lived keys for storage: index key || audit key, sealed
    /// under this master key's record key with the given associated data.
    pub fn wrap(&self, stable: &StableKeys, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut both = Zeroizing::new([0u8; 2 * KEY_LEN]);
        both[..KEY_LEN].copy_from_slice(stable.index.as_slice());
        both[KEY_LEN..].copy_from_slice(stable.audit.as_slice());
        seal_with(&self.cipher(), both.as_slice(), aad)
    }

    /// Unwraps what [`MasterKey::wrap`] made.
    pub fn unwrap_keys(&self, wrapped: &[u8], aad: &[u8]) -> Result<StableKeys, CryptoError> {
        let both = open_with(&self.cipher(), wrapped, aad)?;
        if both.len() != 2 * KEY_LEN {
            return Err(CryptoError::Malformed);
        }
        let mut index = Zeroizing::new([0u8; KEY_LEN]);
        let mut audit = Zeroizing::new([0u8; KEY_LEN]);
        index.copy_from_slice(&both[..KEY_LEN]);
        audit.copy_from_slice(&both[KEY_LEN..]);
        Ok(StableKeys { index, audit })
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// The long-lived blind-index and audit MAC keys, random, made at `init`.
pub struct StableKeys {
    index: Zeroizing<[u8; KEY_LEN]>,
    audit: Zeroizing<[u8; KEY_LEN]>,
}

impl StableKeys {
    /// Fresh random keys from the operating system's generator (at `init`).
    pub fn generate() -> Result<StableKeys, CryptoError> {
        let mut index = Zeroizing::new([0u8; KEY_LEN]);
        let mut audit = Zeroizing::new([0u8; KEY_LEN]);
        os_random(index.as_mut())?;
        os_random(audit.as_mut())?;
        Ok(StableKeys { index, audit })
    }
}

impl fmt::Debug for StableKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StableKeys(***)")
    }
}

/// Fills `buf` straight from the operating system's generator (keys).
fn os_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    SysRng
        .try_fill_bytes(buf)
        .map_err(|e| CryptoError::Random(e.to_string()))
}

/// A fresh random 96-bit nonce from `rand`'s thread-local generator
/// ([`rand::rngs::ThreadRng`]: ChaCha12, seeded from the operating system
/// and seeded again after every 64 KiB it gives, about 5,000 nonces).
///
/// Why not one OS call per seal: an import seals six values per answer,
/// and a system call for each was a tenth of its time. What AES-GCM needs
/// of a nonce is that it never repeats under one key, not that it is
/// secret (it is stored in the clear beside the ciphertext). Random 96-bit
/// nonces from a cryptographic generator repeat with negligible probability
/// far beyond any number of seals one database sees (NIST SP 800-38D allows
/// 2^32 per key), and each thread has its own OS seed, so threads never
/// share a stream. gbdfl never forks without exec, so no generator state
/// is ever duplicated into a second process.
///
/// Panics (`rand`'s contract) only if the operating system cannot give a
/// seed at all.
fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    nonce
}

/// Bytes before the ciphertext of a sealed value: the version and the nonce.
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Seals into one buffer, encrypting the plaintext where it lies (no
/// second buffer for the ciphertext).
fn seal_with(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = fresh_nonce();
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    match cipher.encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut out[HEADER_LEN..]).into()) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            out.zeroize();
            Err(CryptoError::Open)
        }
    }
}

fn open_with(
    cipher: &Aes256Gcm,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut plain = Zeroizing::new(Vec::new());
    open_into_with(cipher, sealed, aad, &mut plain)?;
    Ok(plain)
}

/// Opens into `plain` (cleared first, its room reused); on failure `plain`
/// holds nothing.
fn open_into_with(
    cipher: &Aes256Gcm,
    sealed: &[u8],
    aad: &[u8],
    plain: &mut Zeroizing<Vec<u8>>,
) -> Result<(), CryptoError> {
    plain.clear();
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != SEAL_VERSION {
        return Err(CryptoError::Malformed);
    }
    let nonce: [u8; NONCE_LEN] = sealed[1..HEADER_LEN].try_into().expect("12 bytes");
    let (body, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
    plain.extend_from_slice(body);
    cipher
        .decrypt_inout_detached(
            &Nonce::from(nonce),
            aad,
            plain.as_mut_slice().into(),
            tag.try_into().expect("16 bytes"),
        )
        .map_err(|_| {
            plain.zeroize();
            CryptoError::Open
        })
}

/// Short printable id of a key, from its check value: safe to show in errors.
pub fn key_id(check_value: &[u8]) -> String {
    hex::encode(&check_value[..4.min(check_value.len())])
}

/// The subkeys derived from one master key.
#[derive(Clone)]
pub struct Keys {
    cipher: Aes256Gcm,
    index: Zeroizing<[u8; KEY_LEN]>,
    audit: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(***)")
    }
}

/// Associated data binding a sealed value to its place: table, column, row id
/// and key version. The exact bytes are in docs/FORMAT.md.
pub fn associated_data(table: &str, column: &str, row_id: &str, key_version: u32) -> Vec<u8> {
    let mut aad = Vec::new();
    associated_data_into(&mut aad, table, column, row_id, key_version);
    aad
}

/// [`associated_data`] written into `aad` (cleared first): a scan opening
/// a million values reuses one buffer.
pub fn associated_data_into(
    aad: &mut Vec<u8>,
    table: &str,
    column: &str,
    row_id: &str,
    key_version: u32,
) {
    // Pieces and digits put in place: the expiry scan builds a million of
    // these, and `write!` was a third of the time spent opening.
    aad.clear();
    for piece in [PLACE_LABEL, table.as_bytes(), b"|", column.as_bytes(), b"|"] {
        aad.extend_from_slice(piece);
    }
    aad.extend_from_slice(row_id.as_bytes());
    aad.push(b'|');
    let mut digits = [0u8; 10];
    let (mut n, mut at) = (key_version, digits.len());
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    aad.extend_from_slice(&digits[at..]);
}

/// The associated data of a value whose row's choosing fields are bound
/// too (format version 6, `lookups` and `queue`): [`associated_data_into`]
/// with the label `gbdfl/v2|`, then `|` and `binding`, the row's fields as
/// docs/FORMAT.md lists them ([`crate::sealed`] builds them).
pub fn bound_data_into(
    aad: &mut Vec<u8>,
    table: &str,
    column: &str,
    row_id: &str,
    key_version: u32,
    binding: &[u8],
) {
    associated_data_into(aad, table, column, row_id, key_version);
    aad[..PLACE_LABEL.len()].copy_from_slice(BOUND_LABEL);
    aad.push(b'|');
    aad.extend_from_slice(binding);
}

/// How the associated data of a value bound to its place only begins.
const PLACE_LABEL: &[u8] = b"gbdfl/v1|";
/// How the associated data of a value bound to its row's fields begins.
const BOUND_LABEL: &[u8] = b"gbdfl/v2|";

impl Keys {
    /// Seals `plaintext` under a fresh random nonce:
    /// `version (1) || nonce (12) || ciphertext || tag (16)`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.cipher, plaintext, aad)
    }

    /// Whether `wrapped`, the plaintext of a wrapped-keys value (index key
    /// || audit key, [`MasterKey::wrap`]), holds the very keys these are
    /// made with. Compared without an early exit.
    pub fn holds_stable(&self, wrapped: &[u8]) -> bool {
        if wrapped.len() != 2 * KEY_LEN {
            return false;
        }
        let differ = self
            .index
            .iter()
            .chain(self.audit.iter())
            .zip(wrapped)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differ == 0
    }

    /// Opens a value made by [`Keys::seal`] with the same associated data.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_with(&self.cipher, sealed, aad)
    }

    /// [`Keys::open`] into `plain`, reusing its room.
    pub fn open_into(
        &self,
        sealed: &[u8],
        aad: &[u8],
        plain: &mut Zeroizing<Vec<u8>>,
    ) -> Result<(), CryptoError> {
        open_into_with(&self.cipher, sealed, aad, plain)
    }

    /// The blind index of an IIN: HMAC-SHA-256 under the index subkey over
    /// the 12 ASCII digits. Equal IINs give equal indexes; nothing else
    /// about the IIN can be learned from it without the key.
    pub fn blind_index(&self, iin: &str) -> [u8; 32] {
        let mut m = hmac_with(&self.index);
        m.update(iin.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The index of one request (an IIN and a session id) in the queue:
    /// HMAC-SHA-256 under the index subkey over `"queue" 0x00 IIN 0x00
    /// session`, so one request is never queued twice and nothing about it
    /// can be learned without the key.
    pub fn request_index(&self, iin: &str, session: &str) -> [u8; 32] {
        let mut m = hmac_with(&self.index);
        m.update(b"queue\0");
        m.update(iin.as_bytes());
        m.update(b"\0");
        m.update(session.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The id of an imported answer: the first 16 bytes of HMAC-SHA-256
    /// under the index subkey over `"import" 0x00 body`. The same answer
    /// imported twice, or by two offices sharing a key, gets the same id, so
    /// re-imports and merges never duplicate it; without the key nothing
    /// about the answer can be learned from it.
    pub fn content_id(&self, body: &[u8]) -> [u8; 16] {
        let mut m = hmac_with(&self.index);
        m.update(b"import\0");
        m.update(body);
        let full: [u8; 32] = m.finalize().into_bytes().into();
        full[..16].try_into().expect("16 of 32 bytes")
    }

    /// HMAC-SHA-256 under the audit subkey over the given parts, each
    /// prefixed by its length as 8 bytes big-endian so parts cannot run together.
    pub fn audit_mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = hmac_with(&self.audit);
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

fn hmac_with(key: &[u8; KEY_LEN]) -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        MasterKey::from_bytes([7u8; 32]).keys(&StableKeys::generate().unwrap())
    }

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let k = keys();
        let aad = associated_data("lookups", "response", "id-1", 1);
        let a = k.seal(b"hello", &aad).unwrap();
        let b = k.seal(b"hello", &aad).unwrap();
        assert_ne!(a, b, "each seal uses a fresh nonce");
        assert_eq!(&k.open(&a, &aad).unwrap()[..], b"hello");
    }

    #[test]
    fn associated_data_is_the_documented_text() {
        for version in [0, 1, 9, 10, 99, 100, 4_000_000_000, u32::MAX] {
            for (table, column, id) in [("lookups", "summary_enc", "id-2"), ("keys", "", "")] {
                let want = format!("gbdfl/v1|{table}|{column}|{id}|{version}");
                assert_eq!(associated_data(table, column, id, version), want.as_bytes());
            }
        }
    }

    #[test]
    fn open_into_reuses_its_buffer_and_keeps_nothing_on_failure() {
        let k = keys();
        let mut aad = b"left over".to_vec();
        associated_data_into(&mut aad, "lookups", "summary_enc", "id-2", 3);
        assert_eq!(aad, associated_data("lookups", "summary_enc", "id-2", 3));
        let sealed = k.seal(b"short", &aad).unwrap();
        let mut plain = Zeroizing::new(b"a much longer previous plaintext".to_vec());
        k.open_into(&sealed, &aad, &mut plain).unwrap();
        assert_eq!(&plain[..], b"short");
        let other = associated_data("lookups", "summary_enc", "id-3", 3);
        assert!(k.open_into(&sealed, &other, &mut plain).is_err());
        assert!(plain.is_empty(), "a failed open leaves no bytes behind");
        assert!(k.open_into(b"\x01", &aad, &mut plain).is_err());
    }

    #[test]
    fn sealed_values_have_the_layout_and_nonces_differ_across_threads() {
        let k = keys();
        let aad = associated_data("lookups", "response_enc", "id-1", 1);
        let sealed = k.seal(b"hello", &aad).unwrap();
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(&k.open(&sealed, &aad).unwrap()[..], b"hello");
        let nonces = |n: usize| {
            std::thread::spawn(move || (0..n).map(|_| fresh_nonce()).collect::<Vec<_>>())
        };
        let (a, b) = (nonces(1000), nonces(1000));
        let mut all: Vec<_> = a.join().unwrap();
        all.extend(b.join().unwrap());
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a nonce repeated");
    }

    #[test]
    fn moved_or_tampered_values_fail() {
        let k = keys();
        let aad = associated_data("lookups", "response", "id-1", 1);
        let mut sealed = k.seal(b"hello", &aad).unwrap();
        let other_row = associated_data("lookups", "response", "id-2", 1);
        assert!(matches!(
            k.open(&sealed, &other_row),
            Err(CryptoError::Open)
        ));
        let other_version = associated_data("lookups", "response", "id-1", 2);
        assert!(k.open(&sealed, &other_version).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(k.open(&sealed, &aad).is_err());
        assert!(matches!(
            k.open(&[1, 2, 3], &aad),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn other_key_cannot_open_and_indexes_differ() {
        let k1 = keys();
        let k2 = MasterKey::from_bytes([8u8; 32]).keys(&StableKeys::generate().unwrap());
        let aad = b"x";
        let sealed = k1.seal(b"secret", aad).unwrap();
        assert!(k2.open(&sealed, aad).is_err());
        assert_eq!(
            k1.blind_index("950215300004"),
            k1.blind_index("950215300004")
        );
        assert_ne!(
            k1.blind_index("950215300004"),
            k2.blind_index("950215300004")
        );
    }

    #[test]
    fn wrapped_keys_survive_a_new_master_key() {
        let old = MasterKey::from_bytes([9u8; 32]);
        let new = MasterKey::from_bytes([10u8; 32]);
        let stable = StableKeys::generate().unwrap();
        let w = old.wrap(&stable, b"keys|1").unwrap();
        assert!(new.unwrap_keys(&w, b"keys|1").is_err());
        assert!(old.unwrap_keys(&w, b"keys|2").is_err());
        let back = old.unwrap_keys(&w, b"keys|1").unwrap();
        let rewrapped = new.wrap(&back, b"keys|2").unwrap();
        let again = new.unwrap_keys(&rewrapped, b"keys|2").unwrap();
        assert_eq!(
            old.keys(&stable).blind_index("x"),
            new.keys(&again).blind_index("x"),
            "the blind index does not change with the master key"
        );
        assert_ne!(old.check_value(), new.check_value());
        assert_eq!(format!("{old:?}"), "MasterKey(***)");
    }
}
