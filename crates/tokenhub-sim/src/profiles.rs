//! The product profile versions that fit the simulators: the TSP simulator's five elements, placed
//! where the device simulator reads them (`8001` = `cmk_ac`, `0101` = the record with track 2, PSN
//! and PAR). The demo and the end-to-end tests define these at the hub.

use serde_json::{json, Value};

/// Version 1: the elements and a small template (the README's example).
pub fn profile_v1() -> Value {
    json!({
        "dataElements": [
            {"name": "cmk_ac", "required": true, "format": "hex", "maxLength": 32, "sensitive": true, "dgi": "8001"},
            {"name": "cmk_rp", "required": true, "format": "hex", "maxLength": 32, "sensitive": true, "dgi": "8002"},
            {"name": "track2_data", "required": true, "format": "hex", "maxLength": 38, "sensitive": true, "dgi": "0101", "tag": "57"},
            {"name": "psn", "required": true, "format": "digits", "maxLength": 2, "dgi": "0101", "tag": "5F34"},
            {"name": "par", "required": true, "format": "text", "maxLength": 29, "dgi": "0101", "tag": "9F24"}
        ],
        "template": [
            {"dgi": "9102", "data": "A5058801015F2D02656E"},
            {"dgi": "0101", "data": "70049F0701FF"}
        ]
    })
}

/// Version 2: version 1 with a transit record (DGI `0202`), what a campaign deploys.
pub fn profile_v2() -> Value {
    let mut p = profile_v1();
    if let Some(t) = p["template"].as_array_mut() {
        t.push(json!({"dgi": "0202", "data": "70059F5D020001"}));
    }
    p
}
