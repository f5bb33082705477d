//! Who is online: users and their sockets (one user may have several tabs open).

use std::collections::HashMap;

use serde::Serialize;

use crate::{User, UserId};

/// One entry of the `presence` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEntry {
    pub id: UserId,
    pub name: String,
    pub busy: bool,
}

/// Online users and their sockets, keyed by any socket id type `S`.
#[derive(Debug)]
pub struct Presence<S> {
    users: HashMap<UserId, Online<S>>,
}

#[derive(Debug)]
struct Online<S> {
    user: User,
    /// In connection order; a user has a handful at most.
    sockets: Vec<S>,
}

impl<S> Default for Presence<S> {
    fn default() -> Self {
        Self {
            users: HashMap::new(),
        }
    }
}

impl<S: PartialEq> Presence<S> {
    /// Registers a socket. Returns true when the user just came online.
    pub fn add_socket(&mut self, user: &User, socket: S) -> bool {
        match self.users.get_mut(&user.id) {
            Some(online) => {
                if !online.sockets.contains(&socket) {
                    online.sockets.push(socket);
                }
                false
            }
            None => {
                self.users.insert(
                    user.id.clone(),
                    Online {
                        user: user.clone(),
                        sockets: vec![socket],
                    },
                );
                true
            }
        }
    }

    /// Forgets a socket. Returns true when that was the user's last one (they went offline).
    pub fn remove_socket(&mut self, user: &UserId, socket: &S) -> bool {
        let Some(online) = self.users.get_mut(user) else {
            return false;
        };
        online.sockets.retain(|s| s != socket);
        if online.sockets.is_empty() {
            self.users.remove(user);
            true
        } else {
            false
        }
    }

    pub fn is_online(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    pub fn user(&self, user: &UserId) -> Option<&User> {
        self.users.get(user).map(|o| &o.user)
    }

    /// The user's sockets, in connection order.
    pub fn sockets_of(&self, user: &UserId) -> impl Iterator<Item = &S> {
        self.users
            .get(user)
            .into_iter()
            .flat_map(|o| o.sockets.iter())
    }

    /// Every online socket.
    pub fn all_sockets(&self) -> impl Iterator<Item = &S> {
        self.users.values().flat_map(|o| o.sockets.iter())
    }

    /// Everyone online, sorted by name then id, with `busy` from the caller.
    pub fn snapshot(&self, busy: impl Fn(&UserId) -> bool) -> Vec<PresenceEntry> {
        let mut list: Vec<PresenceEntry> = self
            .users
            .values()
            .map(|o| PresenceEntry {
                id: o.user.id.clone(),
                name: o.user.name.clone(),
                busy: busy(&o.user.id),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str) -> User {
        User {
            id: UserId::new(id),
            name: name.into(),
        }
    }

    #[test]
    fn users_stay_online_until_their_last_socket_goes() {
        let mut p = Presence::<u32>::default();
        let alice = user("a", "Alice");
        assert!(p.add_socket(&alice, 1));
        assert!(!p.add_socket(&alice, 2));
        assert_eq!(
            p.sockets_of(&alice.id).copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(!p.remove_socket(&alice.id, &1));
        assert!(p.is_online(&alice.id));
        assert!(p.remove_socket(&alice.id, &2));
        assert!(!p.is_online(&alice.id));
        assert!(!p.remove_socket(&alice.id, &2));
    }

    #[test]
    fn snapshot_is_sorted_and_marks_busy() {
        let mut p = Presence::<u32>::default();
        p.add_socket(&user("b", "Bob"), 1);
        p.add_socket(&user("a", "Alice"), 2);
        p.add_socket(&user("c", "Alice"), 3);
        let snap = p.snapshot(|id| id.as_str() == "b");
        let ids: Vec<_> = snap.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b"]);
        assert!(snap[2].busy && !snap[0].busy);
        assert_eq!(p.all_sockets().count(), 3);
        assert_eq!(p.user(&UserId::new("b")).unwrap().name, "Bob");
    }
}
