//! Name-based (version 5) UUIDs, the way every derived id and digest in the workspace is
//! made: [`MessageId::derived`](crate::MessageId::derived), the reply ids, the inbound
//! ids' digests, the keys of reports naming only WhatsApp's id, and the policy's
//! derived `messageId`s and claims.
//!
//! The same UUIDs as `uuid`'s `Uuid::new_v5` (a test checks every byte, for any name),
//! so ids stored, claimed or sent to the gateway by an earlier release are found again.
//! Hashed with RustCrypto's `sha1`, which uses the CPU's SHA instructions where it has
//! them: `uuid`'s own SHA-1 took about 2,300 instructions an id, and a send naming its
//! `messageId` derives two.

use sha1::{Digest, Sha1};
use uuid::Uuid;

/// The version 5 UUID of the name made of `parts` joined end to end, under `namespace`
/// (RFC 9562, section 5.5). Taking the name in parts spares the caller building it.
pub(crate) fn uuid_v5(namespace: &Uuid, parts: &[&[u8]]) -> Uuid {
    let mut hasher = Sha1::new();
    hasher.update(namespace.as_bytes());
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// RFC 9562's own example (appendix A.4): `www.example.com` under the DNS namespace.
    #[test]
    fn the_rfc_example_gives_the_rfc_uuid() {
        let id = uuid_v5(&Uuid::NAMESPACE_DNS, &[b"www.example.com"]);
        assert_eq!(id.to_string(), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
    }

    proptest! {
        /// Every id derived before this module (by `Uuid::new_v5`) is derived again,
        /// whatever the namespace, the name and where it is cut into parts.
        #[test]
        fn the_same_uuid_as_uuid_new_v5(
            namespace in any::<u128>(),
            name in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let namespace = Uuid::from_u128(namespace);
            let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(name.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut start = 0;
            for end in at {
                parts.push(&name[start..end]);
                start = end;
            }
            parts.push(&name[start..]);
            prop_assert_eq!(uuid_v5(&namespace, &parts), Uuid::new_v5(&namespace, &name));
        }
    }
}
