//! Admission: who may open a WebSocket. Caps the open connections in all and
//! per client IP, and checks the browser's Origin against an allow-list.
//!
//! The Origin check is what stops cross-site WebSocket hijacking: browsers
//! send cookies with a WebSocket upgrade from any page, and only the Origin
//! header tells the server which site opened it. Clients that are not
//! browsers send no Origin and are let through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::HeaderValue;

use crate::api::ApiError;

/// The admission policy and the count of open connections.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    allowed_origins: Vec<String>,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// A policy. An empty `allowed_origins` lets any origin in.
    pub fn new(max_total: usize, max_per_ip: usize, allowed_origins: Vec<String>) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            allowed_origins: allowed_origins
                .into_iter()
                .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|origin| !origin.is_empty())
                .collect(),
            open: Mutex::new(Open::default()),
        })
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        // Every critical section is a few integer updates: a poisoned lock
        // still holds consistent counts.
        self.open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Checks the Origin, then takes a place for a connection from `ip`.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        origin: Option<&HeaderValue>,
    ) -> Result<Ticket, ApiError> {
        self.check_origin(origin)?;
        let mut open = self.open();
        if open.total >= self.max_total {
            return Err(ApiError::TooManyConnections);
        }
        let from_ip = open.per_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(ApiError::TooManyConnectionsFromIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            ip,
        })
    }

    fn check_origin(&self, origin: Option<&HeaderValue>) -> Result<(), ApiError> {
        let (false, Some(origin)) = (self.allowed_origins.is_empty(), origin) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .map_err(|_| ApiError::OriginNotAllowed)?;
        if self.allowed_origins.contains(&origin) {
            Ok(())
        } else {
            Err(ApiError::OriginNotAllowed)
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open().total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.open();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn caps_total_and_per_ip_and_frees_places_on_drop() {
        let admission = Admission::new(3, 2, Vec::new());
        let a = admission.admit(LOCAL, None).unwrap();
        let _b = admission.admit(LOCAL, None).unwrap();
        assert!(matches!(
            admission.admit(LOCAL, None),
            Err(ApiError::TooManyConnectionsFromIp)
        ));
        let _c = admission.admit(OTHER, None).unwrap();
        assert!(matches!(
            admission.admit(OTHER, None),
            Err(ApiError::TooManyConnections)
        ));
        drop(a);
        assert_eq!(admission.open_connections(), 2);
        admission.admit(LOCAL, None).unwrap();
    }

    #[test]
    fn origin_allow_list_applies_to_browsers_only() {
        let admission = Admission::new(10, 10, vec!["https://Shop.example/".to_owned()]);
        let ok = HeaderValue::from_static("https://shop.example");
        let evil = HeaderValue::from_static("https://evil.example");
        assert!(admission.admit(LOCAL, Some(&ok)).is_ok());
        assert!(matches!(
            admission.admit(LOCAL, Some(&evil)),
            Err(ApiError::OriginNotAllowed)
        ));
        assert!(
            admission.admit(LOCAL, None).is_ok(),
            "no Origin: not a browser"
        );
        let open = Admission::new(10, 10, Vec::new());
        assert!(
            open.admit(LOCAL, Some(&evil)).is_ok(),
            "no list: any origin"
        );
    }
}
