//! Room names. A room is the set of connections that watch one thing: an
//! invoice, an address, or one token at an address. Rooms are derived from a
//! payment row reloaded from the database, never from anything a client or a
//! NOTIFY payload says.

use std::fmt;

use crate::address::CashAddr;
use crate::ids::{InvoiceId, TokenId};

/// One room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Room {
    /// Every payment of one invoice.
    Invoice(InvoiceId),
    /// Every payment to one address, whatever its token.
    Address(CashAddr),
    /// Payments of one CashToken category to one address.
    AddressToken(CashAddr, TokenId),
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Room::Invoice(id) => write!(f, "invoice:{id}"),
            Room::Address(address) => write!(f, "address:{address}"),
            Room::AddressToken(address, token) => {
                write!(f, "address:{address}/{}", token.as_str())
            }
        }
    }
}
