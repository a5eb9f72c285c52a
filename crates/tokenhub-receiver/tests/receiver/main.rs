//! The receiver's tests, in one binary: the signature vectors and rejections (`verify`), the
//! store rules against both stores (`stores`), random orders (`props`) and the HTTP route
//! (`http`).

mod helpers;
mod http;
mod props;
mod stores;
mod verify;
