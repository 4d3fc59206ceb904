//! Bringing a HomeSpot's Bluetooth link up on demand (DESIGN.md section 11): [`plan`] decides
//! when (sans-IO), [`pan`] does it through BlueZ.

pub mod pan;
pub mod plan;
