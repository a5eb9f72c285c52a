//! Values crossing the store's boundary: what a statement binds ([`Encode`]) and what a column is
//! read as ([`Decode`]), the same on both engines.

use crate::domain::named::Named;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A null, with the type it stands for (PostgreSQL types every parameter).
    Null(Kind),
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The type of a [`Value::Null`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Real,
    Text,
    Blob,
}

/// A Rust value that can be bound as a parameter.
pub trait Encode {
    /// The SQL type of the values of this Rust type (a `None` is bound as a null of it).
    const KIND: Kind;
    fn encode(self) -> Value;
}

macro_rules! encode_int {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            const KIND: Kind = Kind::Int;
            fn encode(self) -> Value {
                Value::Int(i64::from(self))
            }
        }
    )*};
}
encode_int!(i64, i32, i16, u32, u16, u8);

impl Encode for bool {
    const KIND: Kind = Kind::Bool;
    fn encode(self) -> Value {
        Value::Bool(self)
    }
}
impl Encode for f64 {
    const KIND: Kind = Kind::Real;
    fn encode(self) -> Value {
        Value::Real(self)
    }
}
impl Encode for String {
    const KIND: Kind = Kind::Text;
    fn encode(self) -> Value {
        Value::Text(self)
    }
}
impl Encode for &String {
    const KIND: Kind = Kind::Text;
    fn encode(self) -> Value {
        Value::Text(self.clone())
    }
}
impl Encode for &str {
    const KIND: Kind = Kind::Text;
    fn encode(self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Encode for Vec<u8> {
    const KIND: Kind = Kind::Blob;
    fn encode(self) -> Value {
        Value::Blob(self)
    }
}
impl Encode for &Vec<u8> {
    const KIND: Kind = Kind::Blob;
    fn encode(self) -> Value {
        Value::Blob(self.clone())
    }
}
impl Encode for &[u8] {
    const KIND: Kind = Kind::Blob;
    fn encode(self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl<T: Encode> Encode for Option<T> {
    const KIND: Kind = T::KIND;
    fn encode(self) -> Value {
        self.map_or(Value::Null(T::KIND), Encode::encode)
    }
}
impl<T: Encode + Clone> Encode for &Option<T> {
    const KIND: Kind = T::KIND;
    fn encode(self) -> Value {
        self.clone().encode()
    }
}
impl Encode for &i64 {
    const KIND: Kind = Kind::Int;
    fn encode(self) -> Value {
        Value::Int(*self)
    }
}

/// A Rust value a column can be read as.
pub trait Decode: Sized {
    fn decode(v: &Value) -> Option<Self>;
    const NAME: &'static str;
}

impl Decode for i64 {
    const NAME: &'static str = "an integer";
    fn decode(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}
impl Decode for i32 {
    const NAME: &'static str = "a 32-bit integer";
    fn decode(v: &Value) -> Option<Self> {
        i64::decode(v).and_then(|i| i32::try_from(i).ok())
    }
}
impl Decode for bool {
    const NAME: &'static str = "a boolean";
    fn decode(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl Decode for f64 {
    const NAME: &'static str = "a number";
    fn decode(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl Decode for String {
    const NAME: &'static str = "text";
    fn decode(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl Decode for Vec<u8> {
    const NAME: &'static str = "bytes";
    fn decode(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: Decode> Decode for Option<T> {
    const NAME: &'static str = T::NAME;
    fn decode(v: &Value) -> Option<Self> {
        match v {
            Value::Null(_) => Some(None),
            v => T::decode(v).map(Some),
        }
    }
}

/// The domain's named enums cross as their text.
macro_rules! named_codec {
    ($($t:ty),* $(,)?) => {$(
        impl Encode for $t {
            const KIND: Kind = Kind::Text;
            fn encode(self) -> Value {
                Value::Text(Named::as_str(self).to_string())
            }
        }
        impl Decode for $t {
            const NAME: &'static str = <$t as Named>::WHAT;
            fn decode(v: &Value) -> Option<Self> {
                match v {
                    Value::Text(s) => <$t as Named>::parse(s),
                    _ => None,
                }
            }
        }
    )*};
}
named_codec!(
    crate::domain::admin::Role,
    crate::domain::tsp_call::TspCall,
    crate::domain::tsp_call::OutboxState,
    crate::domain::tsp_health::TspHealthState,
    crate::domain::notification::NotificationState,
    crate::domain::notification::RequestorState,
    crate::domain::campaign::CampaignState,
    crate::domain::campaign::Step,
    crate::domain::personalization::Kind,
    crate::domain::personalization::PersonalizationState,
);
