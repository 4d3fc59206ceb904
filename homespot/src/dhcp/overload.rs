//! Option overload (option 52, RFC 2132 section 9.3): options carried in the `file` and
//! `sname` fields of a request, merged into the options area before the request is handled.

use dhcproto::v4::{DhcpOption, DhcpOptions, Message, OptionCode};
use dhcproto::{Decodable, Decoder};

/// Merges the overloaded fields' options into `msg` (options already in the options area
/// win). Returns false when an overloaded field is malformed (the packet is dropped).
pub fn merge(msg: &mut Message) -> bool {
    let which = match msg.opts().get(OptionCode::OptionOverload) {
        Some(DhcpOption::OptionOverload(v)) => *v,
        _ => return true,
    };
    let mut fields: Vec<Vec<u8>> = Vec::new();
    if which == 1 || which == 3 {
        fields.push(msg.fname().unwrap_or_default().to_vec());
    }
    if which == 2 || which == 3 {
        fields.push(msg.sname().unwrap_or_default().to_vec());
    }
    if fields.is_empty() {
        return false;
    }
    for f in fields {
        if !super::engine::options_well_formed(&f) {
            return false;
        }
        let Ok(opts) = DhcpOptions::decode(&mut Decoder::new(&with_end(f))) else {
            return false;
        };
        for (code, o) in opts.iter() {
            if *code != OptionCode::End && msg.opts().get(*code).is_none() {
                msg.opts_mut().insert(o.clone());
            }
        }
    }
    // The overloaded fields were options, not a file or server name.
    msg.set_fname_str("").set_sname_str("");
    true
}

/// The field's bytes, ending with an End option so the decoder stops.
fn with_end(mut f: Vec<u8>) -> Vec<u8> {
    f.push(255);
    f
}
