//! Reading and checking a personalization profile the way a payment application does before it
//! accepts it: EMV CPS DGIs (`id` 2 bytes BE | length 1 byte if < 0xFF, else `FF` + 2 bytes BE |
//! value), records as BER-TLV.
//!
//! What the device requires (the demo profile's layout):
//! - every DGI parses, none is repeated, nothing trails;
//! - `8001`: the card master key for application cryptograms, 16 bytes (required);
//! - `8002`: the card master key for remote payment, 16 bytes (optional);
//! - `0101`: a record, exactly one well-formed `70` template (required). Inside it, when present,
//!   `57` (track 2: PAN digits, `D`, YYMM, service code, discretionary digits, `F` pad),
//!   `5F34` (PSN, 1 byte BCD) and `9F24` (PAR, 29 ASCII alphanumerics) must be well-formed too.
//!
//! Any other DGI (FCI `9102`, transit data of later profile versions…) is parsed and ignored.
//! Errors name DGIs, tags and sizes, never values.

use std::collections::HashSet;

use zeroize::Zeroizing;

/// DGI of the card master key for application cryptograms.
pub const DGI_CMK_AC: u16 = 0x8001;
/// DGI of the card master key for remote payment.
pub const DGI_CMK_RP: u16 = 0x8002;
/// DGI of record 1 of short file 1.
pub const DGI_RECORD_1: u16 = 0x0101;
/// How deep constructed TLVs may nest before the profile is refused (no real record comes close).
const MAX_TLV_DEPTH: usize = 8;

/// Why a profile is refused; the text is what the device reports as the FAILURE reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("the profile ends inside a DGI header at byte {0}")]
    TruncatedHeader(usize),
    #[error("DGI {id:04X} claims {claimed} bytes but only {left} remain")]
    TruncatedValue {
        id: u16,
        claimed: usize,
        left: usize,
    },
    #[error("DGI {0:04X} uses the 3-byte length form for fewer than 255 bytes")]
    LongFormForShortLength(u16),
    #[error("DGI {0:04X} appears more than once")]
    Repeated(u16),
    #[error("DGI {0:04X} is missing")]
    Missing(u16),
    #[error("DGI {id:04X} is {len} bytes, not {expected}")]
    WrongLength {
        id: u16,
        len: usize,
        expected: usize,
    },
    #[error("DGI {0:04X} is not one well-formed 70 template: {1}")]
    BadRecord(u16, String),
    #[error("tag {tag} in DGI {dgi:04X} is malformed: {why}")]
    BadElement {
        dgi: u16,
        tag: &'static str,
        why: &'static str,
    },
}

/// One DGI, borrowing its value from the profile.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dgi<'a> {
    pub id: u16,
    pub value: &'a [u8],
}

impl std::fmt::Debug for Dgi<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A DGI may hold a key: its id and size only.
        write!(f, "Dgi({:04X}, {} bytes)", self.id, self.value.len())
    }
}

/// Splits a profile into its DGIs, checking that each is whole and uses the contract's length
/// form.
pub fn parse_dgis(bytes: &[u8]) -> Result<Vec<Dgi<'_>>, ProfileError> {
    let mut dgis = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + 3)
            .ok_or(ProfileError::TruncatedHeader(at))?;
        let id = u16::from_be_bytes([header[0], header[1]]);
        let (len, header_len) = if header[2] == 0xFF {
            let ext = bytes
                .get(at + 3..at + 5)
                .ok_or(ProfileError::TruncatedHeader(at))?;
            let len = usize::from(u16::from_be_bytes([ext[0], ext[1]]));
            if len < 0xFF {
                return Err(ProfileError::LongFormForShortLength(id));
            }
            (len, 5)
        } else {
            (usize::from(header[2]), 3)
        };
        let start = at + header_len;
        let value = bytes
            .get(start..start + len)
            .ok_or(ProfileError::TruncatedValue {
                id,
                claimed: len,
                left: bytes.len() - start,
            })?;
        dgis.push(Dgi { id, value });
        at = start + len;
    }
    Ok(dgis)
}

/// One BER-TLV data object.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag's bytes as a number, e.g. `0x9F24`.
    pub tag: u32,
    pub value: &'a [u8],
}

impl std::fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tlv({:X}, {} bytes)", self.tag, self.value.len())
    }
}

/// Splits `bytes` into consecutive BER-TLV objects (nothing between or after them), checking the
/// contents of constructed ones recursively.
pub fn parse_tlvs(bytes: &[u8]) -> Result<Vec<Tlv<'_>>, String> {
    parse_tlvs_at(bytes, 0)
}

fn parse_tlvs_at(bytes: &[u8], depth: usize) -> Result<Vec<Tlv<'_>>, String> {
    if depth > MAX_TLV_DEPTH {
        return Err("templates nest too deep".into());
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        // Tag: one byte, or more when its low five bits are all set; then while bit 8 is set.
        let first = bytes[at];
        let mut tag = u32::from(first);
        let mut end = at + 1;
        if first & 0x1F == 0x1F {
            loop {
                let b = *bytes.get(end).ok_or("a tag is cut short")?;
                if end - at >= 4 {
                    return Err("a tag is longer than 4 bytes".into());
                }
                tag = (tag << 8) | u32::from(b);
                end += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        let len_byte = *bytes.get(end).ok_or("a length is missing")?;
        end += 1;
        let len = match len_byte {
            0..=0x7F => usize::from(len_byte),
            0x81 => {
                let b = *bytes.get(end).ok_or("a length is cut short")?;
                end += 1;
                usize::from(b)
            }
            0x82 => {
                let b = bytes.get(end..end + 2).ok_or("a length is cut short")?;
                end += 2;
                usize::from(u16::from_be_bytes([b[0], b[1]]))
            }
            _ => return Err(format!("unsupported length form {len_byte:02X}")),
        };
        let value = bytes
            .get(end..end + len)
            .ok_or_else(|| format!("tag {tag:X} claims {len} bytes, fewer remain"))?;
        if first & 0x20 != 0 {
            parse_tlvs_at(value, depth + 1)?;
        }
        out.push(Tlv { tag, value });
        at = end + len;
    }
    Ok(out)
}

/// What the payment application keeps of an accepted profile.
pub struct PaymentProfile {
    pub cmk_ac: Zeroizing<[u8; 16]>,
    pub cmk_rp: Option<Zeroizing<[u8; 16]>>,
    /// The token PAN's last four digits, from track 2 (not secret: wallets show them).
    pub last4: Option<String>,
    pub psn: Option<u8>,
    pub par: Option<String>,
    /// Every DGI id, in profile order.
    pub dgis: Vec<u16>,
}

impl std::fmt::Debug for PaymentProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentProfile")
            .field("last4", &self.last4)
            .field("psn", &self.psn)
            .field("dgis", &self.dgis)
            .finish_non_exhaustive()
    }
}

fn key(dgi: Option<&Dgi<'_>>, id: u16) -> Result<Option<Zeroizing<[u8; 16]>>, ProfileError> {
    let Some(dgi) = dgi else { return Ok(None) };
    let mut key = Zeroizing::new([0u8; 16]);
    if dgi.value.len() != key.len() {
        return Err(ProfileError::WrongLength {
            id,
            len: dgi.value.len(),
            expected: 16,
        });
    }
    key.copy_from_slice(dgi.value);
    Ok(Some(key))
}

/// Parses and checks a decrypted profile (see the module documentation for the rules).
pub fn check(plaintext: &[u8]) -> Result<PaymentProfile, ProfileError> {
    let dgis = parse_dgis(plaintext)?;
    let mut seen = HashSet::new();
    for d in &dgis {
        if !seen.insert(d.id) {
            return Err(ProfileError::Repeated(d.id));
        }
    }
    let find = |id: u16| dgis.iter().find(|d| d.id == id);
    let cmk_ac = key(find(DGI_CMK_AC), DGI_CMK_AC)?.ok_or(ProfileError::Missing(DGI_CMK_AC))?;
    let cmk_rp = key(find(DGI_CMK_RP), DGI_CMK_RP)?;
    let record = find(DGI_RECORD_1).ok_or(ProfileError::Missing(DGI_RECORD_1))?;
    let bad_record = |why: String| ProfileError::BadRecord(DGI_RECORD_1, why);
    let top = parse_tlvs(record.value).map_err(bad_record)?;
    let template = match top.as_slice() {
        [t] if t.tag == 0x70 => t,
        _ => return Err(bad_record("expected a single 70 template".into())),
    };
    let inner = parse_tlvs(template.value).map_err(bad_record)?;
    let bad = |tag, why| ProfileError::BadElement {
        dgi: DGI_RECORD_1,
        tag,
        why,
    };
    let mut last4 = None;
    let mut psn = None;
    let mut par = None;
    for tlv in &inner {
        match tlv.tag {
            0x57 => last4 = Some(track2_last4(tlv.value).map_err(|why| bad("57", why))?),
            0x5F34 => {
                let [b] = tlv.value else {
                    return Err(bad("5F34", "not 1 byte"));
                };
                if b >> 4 > 9 || b & 0x0F > 9 {
                    return Err(bad("5F34", "not BCD"));
                }
                psn = Some((b >> 4) * 10 + (b & 0x0F));
            }
            0x9F24 => {
                if tlv.value.len() != 29 || !tlv.value.iter().all(u8::is_ascii_alphanumeric) {
                    return Err(bad("9F24", "not 29 ASCII alphanumerics"));
                }
                par = Some(String::from_utf8_lossy(tlv.value).into_owned());
            }
            _ => {}
        }
    }
    Ok(PaymentProfile {
        cmk_ac,
        cmk_rp,
        last4,
        psn,
        par,
        dgis: dgis.iter().map(|d| d.id).collect(),
    })
}

/// Checks track 2 equivalent data (packed nibbles) and returns the PAN's last four digits.
fn track2_last4(packed: &[u8]) -> Result<String, &'static str> {
    let nibbles: Zeroizing<Vec<u8>> =
        Zeroizing::new(packed.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect());
    let sep = nibbles
        .iter()
        .position(|&n| n == 0xD)
        .ok_or("no D separator")?;
    let (pan, rest) = nibbles.split_at(sep);
    if !(12..=19).contains(&pan.len()) || pan.iter().any(|&n| n > 9) {
        return Err("the PAN is not 12 to 19 digits");
    }
    let rest = &rest[1..];
    let digits = match rest.last() {
        Some(0xF) => &rest[..rest.len() - 1],
        _ => rest,
    };
    // YYMM and the service code at least, then discretionary digits.
    if digits.len() < 7 || digits.iter().any(|&n| n > 9) {
        return Err("the expiry, service code or discretionary data are not digits");
    }
    Ok(pan[pan.len() - 4..]
        .iter()
        .map(|&n| char::from(b'0' + n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dgi(id: u16, value: &[u8]) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        if value.len() < 0xFF {
            out.push(value.len() as u8);
        } else {
            out.push(0xFF);
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(value);
        out
    }

    fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = tag.to_vec();
        match value.len() {
            n @ 0..=0x7F => out.push(n as u8),
            n @ 0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
            n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(value);
        out
    }

    const TRACK2: [u8; 18] = [
        0x55, 0x55, 0x44, 0x12, 0x34, 0x56, 0x78, 0x90, 0xD2, 0x80, 0x62, 0x01, 0x12, 0x34, 0x56,
        0x78, 0x90, 0x1F,
    ];

    fn record(extra: &[u8]) -> Vec<u8> {
        let mut inner = tlv(&[0x9F, 0x6C], &[0x00, 0x01]); // a fixed TLV of the template
        inner.extend(tlv(&[0x57], &TRACK2));
        inner.extend(tlv(&[0x5F, 0x34], &[0x01]));
        inner.extend(tlv(&[0x9F, 0x24], b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012"));
        inner.extend_from_slice(extra);
        tlv(&[0x70], &inner)
    }

    fn profile(parts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        parts.iter().flat_map(|(id, v)| dgi(*id, v)).collect()
    }

    fn demo() -> Vec<(u16, Vec<u8>)> {
        vec![
            (0x0101, record(&[])),
            (0x8001, vec![0x11; 16]),
            (0x8002, vec![0x22; 16]),
            (0x9102, vec![0xA5, 0x03, 0x50, 0x01, 0x41]),
        ]
    }

    #[test]
    fn the_demo_profile_is_accepted_and_read() {
        let p = check(&profile(&demo())).unwrap();
        assert_eq!(*p.cmk_ac, [0x11; 16]);
        assert_eq!(p.cmk_rp.as_deref(), Some(&[0x22; 16]));
        assert_eq!(p.last4.as_deref(), Some("7890"));
        assert_eq!(p.psn, Some(1));
        assert_eq!(p.par.as_deref(), Some("ABCDEFGHIJKLMNOPQRSTUVWXYZ012"));
        assert_eq!(p.dgis, vec![0x0101, 0x8001, 0x8002, 0x9102]);
        let printed = format!("{p:?}");
        assert!(!printed.contains("17, 17"), "{printed}");
    }

    #[test]
    fn unknown_dgis_are_ignored_and_long_ones_use_the_three_byte_length() {
        let mut parts = demo();
        parts.push((0x0201, record(&[])));
        parts.push((0xB000, vec![0x33; 300]));
        parts.push((0xB001, vec![0x44; 0xFF]));
        let bytes = profile(&parts);
        let dgis = parse_dgis(&bytes).unwrap();
        assert_eq!(dgis[5].id, 0xB000);
        assert_eq!(dgis[5].value.len(), 300);
        assert_eq!(dgis[6].value.len(), 255);
        assert!(check(&bytes).is_ok());
    }

    #[test]
    fn a_missing_or_wrong_sized_key_is_refused() {
        let without: Vec<_> = demo().into_iter().filter(|(id, _)| *id != 0x8001).collect();
        assert_eq!(
            check(&profile(&without)).unwrap_err(),
            ProfileError::Missing(0x8001)
        );
        let mut short = demo();
        short[1].1.pop();
        assert_eq!(
            check(&profile(&short)).unwrap_err(),
            ProfileError::WrongLength {
                id: 0x8001,
                len: 15,
                expected: 16
            }
        );
        let mut rp = demo();
        rp[2].1.push(0);
        assert!(matches!(
            check(&profile(&rp)),
            Err(ProfileError::WrongLength { id: 0x8002, .. })
        ));
    }

    #[test]
    fn broken_dgi_framing_is_refused() {
        let good = profile(&demo());
        assert!(matches!(
            check(&good[..good.len() - 1]),
            Err(ProfileError::TruncatedValue { id: 0x9102, .. })
        ));
        let mut header_cut = good.clone();
        header_cut.extend_from_slice(&[0x01, 0x02]);
        assert_eq!(
            check(&header_cut).unwrap_err(),
            ProfileError::TruncatedHeader(good.len())
        );
        let mut long_form = good.clone();
        long_form.extend_from_slice(&[0xB0, 0x00, 0xFF, 0x00, 0x01, 0xAA]);
        assert_eq!(
            check(&long_form).unwrap_err(),
            ProfileError::LongFormForShortLength(0xB000)
        );
        let mut twice = demo();
        twice.push((0x8001, vec![0x11; 16]));
        assert_eq!(
            check(&profile(&twice)).unwrap_err(),
            ProfileError::Repeated(0x8001)
        );
        assert_eq!(check(&[]).unwrap_err(), ProfileError::Missing(0x8001));
    }

    #[test]
    fn a_record_that_is_not_one_well_formed_70_template_is_refused() {
        let variants: Vec<Vec<u8>> = vec![
            tlv(&[0x71], &tlv(&[0x57], &TRACK2)),
            [record(&[]), vec![0x00]].concat(),
            [record(&[]), record(&[])].concat(),
            {
                let mut r = record(&[]);
                r.pop();
                r
            },
            tlv(&[0x70], &[0x57, 0x05, 0x01]),
            tlv(&[0x70], &[0x9F]),
            tlv(&[0x70], &[0x57, 0x84, 0, 0, 0, 1, 0]),
            tlv(&[0x70], &tlv(&[0xBF, 0x0C], &[0x61, 0x10])),
            vec![],
        ];
        for r in variants {
            let mut parts = demo();
            parts[0].1 = r.clone();
            assert!(
                matches!(
                    check(&profile(&parts)),
                    Err(ProfileError::BadRecord(0x0101, _))
                ),
                "{}",
                hex::encode(&r)
            );
        }
        let without: Vec<_> = demo().into_iter().filter(|(id, _)| *id != 0x0101).collect();
        assert_eq!(
            check(&profile(&without)).unwrap_err(),
            ProfileError::Missing(0x0101)
        );
    }

    #[test]
    fn malformed_track2_psn_and_par_are_refused() {
        let mut no_sep = TRACK2;
        no_sep[8] = 0x22;
        let mut short_pan = vec![0x12, 0x34, 0xD2, 0x80, 0x62, 0x01];
        short_pan.push(0x1F);
        for (extra, tag) in [
            (tlv(&[0x57], &no_sep), "57"),
            (tlv(&[0x57], &short_pan), "57"),
            (
                tlv(&[0x57], &[0x55, 0x55, 0x44, 0x12, 0x34, 0x56, 0xD2]),
                "57",
            ),
            (tlv(&[0x5F, 0x34], &[0x0A]), "5F34"),
            (tlv(&[0x5F, 0x34], b"01"), "5F34"),
            (tlv(&[0x9F, 0x24], b"SHORT"), "9F24"),
            (tlv(&[0x9F, 0x24], &[b'-'; 29]), "9F24"),
        ] {
            let mut parts = demo();
            parts[0].1 = record(&extra);
            match check(&profile(&parts)) {
                Err(ProfileError::BadElement { tag: t, .. }) => assert_eq!(t, tag),
                other => panic!("{tag}: {other:?}"),
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut nested = tlv(&[0x57], &TRACK2);
        for _ in 0..20 {
            nested = tlv(&[0xA5], &nested);
        }
        assert!(parse_tlvs(&nested).is_err());
    }

    #[test]
    fn no_input_makes_the_parsers_panic() {
        // A cheap exhaustive sweep of short inputs plus pseudo-random longer ones.
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for a in 0..=255u8 {
            for b in [0x00, 0x01, 0x1F, 0x7F, 0x80, 0x81, 0x82, 0xFF] {
                let _ = check(&[0x01, 0x01, a, b, 0x70]);
                let _ = parse_tlvs(&[a, b, 0x81]);
                let _ = parse_tlvs(&[0x9F, a, b]);
            }
        }
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = check(&bytes);
            let _ = parse_tlvs(&bytes);
            let mut parts = demo();
            parts[0].1 = tlv(&[0x70], &bytes);
            let _ = check(&profile(&parts));
        }
    }
}
