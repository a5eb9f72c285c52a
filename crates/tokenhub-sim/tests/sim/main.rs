//! The simulators over real HTTP, in one test binary (it links once): the TSP simulator against a
//! fake hub (`tsp`, `tsp_lifecycle`), and the device fleet against a fake hub that seals profiles
//! the way the contract says, transacting with the real TSP simulator (`device`).

mod device;
mod helpers;
mod hub_health;
mod requestor;
mod requestor_merchant;
mod tsp;
mod tsp_cof;
mod tsp_lifecycle;
mod tsp_reperso;
mod wallet_hub;
