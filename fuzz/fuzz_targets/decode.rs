//! `decode` of any parameter, with and without a key, auto-detecting or with a forced scheme.
//! The first byte picks the key and the scheme; the rest is the parameter. Whatever decodes
//! must re-encode to the parameter (or, where the encoder is stricter, decode the same), and a
//! signed parameter verified with the key must re-sign to the same string.

#![no_main]

use botlink_core::payload::{
    self, decode_json, encode_entry, encode_fields, encode_json, encode_stored, encode_text, sign,
};
use botlink_core::{Fields, JsonPayload, Scheme, decode};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"0123456789abcdef-botlink-fuzz-key";

const SCHEMES: [Option<Scheme>; 8] = [
    None,
    Some(Scheme::Raw),
    Some(Scheme::Json),
    Some(Scheme::Entry),
    Some(Scheme::Fields),
    Some(Scheme::Stored),
    Some(Scheme::Signed),
    Some(Scheme::Text),
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(param) = std::str::from_utf8(rest) else {
        return;
    };
    let key = (mode & 1 == 1).then_some(KEY);
    let forced = SCHEMES[usize::from(mode >> 1) % SCHEMES.len()];
    let _ = payload::detect(param);
    let Ok(d) = decode(param, key, forced) else {
        return;
    };
    assert_eq!(d.param, param);

    if d.scheme == Some(Scheme::Signed) {
        match key {
            Some(k) => {
                assert_eq!(d.verified, Some(true));
                assert_eq!(sign(k, &d.inner).unwrap(), param, "re-signing changed it");
            }
            None => {
                assert_eq!(d.verified, None);
                assert!(param.ends_with(&format!("_{}", d.inner)));
            }
        }
    } else {
        assert_eq!(d.inner, param);
        assert_eq!(d.verified, key.map(|_| false));
    }

    let scheme = d.inner_scheme.or(d.scheme).unwrap();
    if forced.is_none() || forced == Some(Scheme::Signed) {
        assert_eq!(payload::detect(&d.inner), scheme);
    }
    let inner = d.inner.as_str();
    match scheme {
        Scheme::Raw | Scheme::Signed => {}
        Scheme::Json => {
            let p = JsonPayload {
                phone: d.phone.clone(),
                email: d.email.clone(),
                external_id: d.external_id.clone(),
                variables: d.variables.clone(),
            };
            // Unknown keys and key order are not kept, so compare values, not strings.
            if let Ok(again) = encode_json(&p) {
                assert_eq!(decode_json(&again).unwrap(), p, "{inner:?}");
            }
        }
        Scheme::Entry => {
            let id = d.entry.as_deref().unwrap();
            assert_eq!(format!("n__{id}"), inner);
            if let Ok(again) = encode_entry(id) {
                assert_eq!(again, inner);
            }
        }
        Scheme::Fields => {
            let f = Fields {
                entry: d.entry.clone().unwrap(),
                value: d.entry_value.clone().unwrap(),
                fields: d.fields.clone(),
            };
            if let Ok(again) = encode_fields(&f) {
                assert_eq!(again, inner);
            }
        }
        Scheme::Stored => {
            let s = d.stored.as_ref().unwrap();
            assert_eq!(encode_stored(&s.code, s.click.as_deref()).unwrap(), inner);
        }
        Scheme::Text => {
            let t = d.text.as_deref().unwrap();
            if let Ok(again) = encode_text(t) {
                assert_eq!(again, inner.trim_end_matches('='), "{inner:?}");
            }
        }
    }
});
