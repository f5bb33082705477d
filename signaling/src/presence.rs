//! Who is online: users and their sockets (one user may have several tabs open), and the
//! presence feed built from them.
//!
//! The feed is a snapshot once per socket (at connect) followed by deltas. Changes (came
//! online, went offline, busy changed) only mark the user *dirty*; [`Presence::flush`] later
//! turns all dirty users into one `presence_update` per group of sockets that see the same
//! people, serialized once per group. So a connect costs O(1) here and O(sockets) once per
//! flush interval, instead of a full list serialized for every socket on every change.
//!
//! Scoping: every socket has *directories* it sees (`*` for "everyone", a token's `rooms`
//! under the rooms scope, none under "nobody"). A user is listed in the directories of their
//! sockets; a socket sees the users who share a directory with it. Sockets with the same set
//! of directories form a group and get identical payloads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::{User, UserId};

/// One entry of the `presence` and `presence_update` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEntry {
    pub id: UserId,
    pub name: String,
    pub busy: bool,
}

/// A directory name: `*` (everyone) or a room.
pub type Dir = Arc<str>;

/// The directories one socket sees, sorted and without duplicates (the group key).
pub type Dirs = Arc<[Dir]>;

/// Builds a [`Dirs`] from any list of names.
pub fn dirs<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Dirs {
    let set: BTreeSet<Dir> = names.into_iter().map(|s| Arc::from(s.as_ref())).collect();
    set.into_iter().collect()
}

/// One serialized payload and the sockets it goes to.
pub struct Outgoing<S> {
    pub sockets: Vec<S>,
    pub payload: Arc<RawValue>,
}

/// Online users, their sockets and the presence feed, keyed by any socket id type `S`.
#[derive(Debug)]
pub struct Presence<S> {
    users: HashMap<UserId, Online<S>>,
    /// Users whose online state, busy flag or directories may have changed since the last
    /// flush.
    dirty: HashSet<UserId>,
    /// What the sockets were told so far, per user: the feed's own view, from which
    /// snapshots are built (so that snapshot + later deltas always add up).
    published: HashMap<UserId, Published>,
    /// Published users per directory.
    members: HashMap<Dir, HashSet<UserId>>,
    /// Receiving sockets by the directories they see.
    groups: HashMap<Dirs, Group<S>>,
    /// The groups that see each directory.
    dir_groups: HashMap<Dir, HashSet<Dirs>>,
}

#[derive(Debug)]
struct Online<S> {
    user: User,
    /// In connection order, with what each sees; a user has a handful at most.
    sockets: Vec<(S, Dirs)>,
}

impl<S> Online<S> {
    fn dirs(&self) -> BTreeSet<Dir> {
        self.sockets
            .iter()
            .flat_map(|(_, d)| d.iter().cloned())
            .collect()
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Published {
    user: User,
    dirs: BTreeSet<Dir>,
    busy: bool,
}

#[derive(Debug)]
struct Group<S> {
    sockets: HashSet<S>,
    /// The serialized `presence` snapshot for this group, until the next change it sees.
    snapshot: Option<Arc<RawValue>>,
}

impl<S> Default for Presence<S> {
    fn default() -> Self {
        Self {
            users: HashMap::new(),
            dirty: HashSet::new(),
            published: HashMap::new(),
            members: HashMap::new(),
            groups: HashMap::new(),
            dir_groups: HashMap::new(),
        }
    }
}

fn raw(value: &impl Serialize) -> Arc<RawValue> {
    // Serializing plain strings and booleans cannot fail.
    Arc::from(serde_json::value::to_raw_value(value).expect("presence serializes"))
}

fn intersects(a: &[Dir], b: &BTreeSet<Dir>) -> bool {
    a.iter().any(|d| b.contains(d))
}

impl<S: Clone + Eq + Hash> Presence<S> {
    /// Registers a socket that sees `dirs` (and is listed in them). Returns true when the
    /// user just came online.
    pub fn add_socket(&mut self, user: &User, socket: S, dirs: Dirs) -> bool {
        self.dirty.insert(user.id.clone());
        if !dirs.is_empty() {
            for dir in dirs.iter() {
                self.dir_groups
                    .entry(dir.clone())
                    .or_default()
                    .insert(dirs.clone());
            }
            self.groups
                .entry(dirs.clone())
                .or_insert_with(|| Group {
                    sockets: HashSet::new(),
                    snapshot: None,
                })
                .sockets
                .insert(socket.clone());
        }
        match self.users.get_mut(&user.id) {
            Some(online) => {
                if online.sockets.iter().all(|(s, _)| *s != socket) {
                    online.sockets.push((socket, dirs));
                }
                false
            }
            None => {
                self.users.insert(
                    user.id.clone(),
                    Online {
                        user: user.clone(),
                        sockets: vec![(socket, dirs)],
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
        let Some(i) = online.sockets.iter().position(|(s, _)| s == socket) else {
            return false;
        };
        let (_, dirs) = online.sockets.remove(i);
        let went_offline = online.sockets.is_empty();
        if went_offline {
            self.users.remove(user);
        }
        self.dirty.insert(user.clone());
        if let Some(group) = self.groups.get_mut(&dirs) {
            group.sockets.remove(socket);
            if group.sockets.is_empty() {
                self.groups.remove(&dirs);
                for dir in dirs.iter() {
                    if let Some(groups) = self.dir_groups.get_mut(dir) {
                        groups.remove(&dirs);
                        if groups.is_empty() {
                            self.dir_groups.remove(dir);
                        }
                    }
                }
            }
        }
        went_offline
    }

    /// Notes that `user`'s busy flag may have changed (sent with the next flush).
    pub fn mark(&mut self, user: &UserId) {
        self.dirty.insert(user.clone());
    }

    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    pub fn is_online(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    pub fn online_users(&self) -> usize {
        self.users.len()
    }

    pub fn user(&self, user: &UserId) -> Option<&User> {
        self.users.get(user).map(|o| &o.user)
    }

    /// The user's sockets, in connection order.
    pub fn sockets_of(&self, user: &UserId) -> impl Iterator<Item = &S> {
        self.users
            .get(user)
            .into_iter()
            .flat_map(|o| o.sockets.iter().map(|(s, _)| s))
    }

    /// Every online socket.
    pub fn all_sockets(&self) -> impl Iterator<Item = &S> {
        self.users
            .values()
            .flat_map(|o| o.sockets.iter().map(|(s, _)| s))
    }

    /// The `presence` snapshot for a socket that sees `dirs`: `{"users": [...]}`, sorted by
    /// name then id, as published so far (changes not flushed yet follow as deltas).
    /// Serialized once per group until the group sees a change.
    pub fn snapshot(&mut self, dirs: &Dirs) -> Arc<RawValue> {
        if let Some(snapshot) = self.groups.get(dirs).and_then(|g| g.snapshot.clone()) {
            return snapshot;
        }
        let mut ids: HashSet<&UserId> = HashSet::new();
        for dir in dirs.iter() {
            ids.extend(self.members.get(dir).into_iter().flatten());
        }
        let mut list: Vec<PresenceEntry> = ids
            .into_iter()
            .filter_map(|id| self.published.get(id))
            .map(|p| PresenceEntry {
                id: p.user.id.clone(),
                name: p.user.name.clone(),
                busy: p.busy,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let snapshot = raw(&serde_json::json!({ "users": list }));
        if let Some(group) = self.groups.get_mut(dirs) {
            group.snapshot = Some(snapshot.clone());
        }
        snapshot
    }

    /// The snapshot for a socket of `me` that sees `dirs`, `me` included even before the
    /// flush announces them (a client learns it is online from its first `presence`): the
    /// cached list with `me`'s entry spliced in front when it is not in it yet.
    pub fn snapshot_for(&mut self, dirs: &Dirs, me: &PresenceEntry) -> Box<RawValue> {
        let cached = self.snapshot(dirs);
        let listed = self
            .published
            .get(&me.id)
            .is_some_and(|p| intersects(dirs, &p.dirs));
        let text = cached.get();
        let spliced = match (listed, text.strip_prefix("{\"users\":[")) {
            (false, Some(rest)) => {
                let entry = serde_json::to_string(me).expect("presence serializes");
                let sep = if rest.starts_with(']') { "" } else { "," };
                format!("{{\"users\":[{entry}{sep}{rest}")
            }
            _ => text.to_owned(),
        };
        RawValue::from_string(spliced).expect("still valid JSON")
    }

    /// Turns every dirty user into deltas: `{"users": [entries that came online or changed],
    /// "offline": [ids]}`, one payload per group of sockets that sees a change.
    pub fn flush(&mut self, busy: impl Fn(&UserId) -> bool) -> Vec<Outgoing<S>> {
        type Changes = (Vec<PresenceEntry>, Vec<UserId>);
        let mut per_group: HashMap<Dirs, Changes> = HashMap::new();
        for id in std::mem::take(&mut self.dirty) {
            let new = self
                .users
                .get(&id)
                .map(|o| Published {
                    user: o.user.clone(),
                    dirs: o.dirs(),
                    busy: busy(&id),
                })
                .filter(|p| !p.dirs.is_empty());
            let old = self.published.remove(&id);
            if old == new {
                if let Some(old) = old {
                    self.published.insert(id, old);
                }
                continue;
            }
            let empty = BTreeSet::new();
            let old_dirs = old.as_ref().map_or(&empty, |p| &p.dirs);
            let new_dirs = new.as_ref().map_or(&empty, |p| &p.dirs);
            let mut candidates: HashSet<&Dirs> = HashSet::new();
            for dir in old_dirs.union(new_dirs) {
                candidates.extend(self.dir_groups.get(dir).into_iter().flatten());
            }
            for key in candidates {
                let changes = per_group.entry(key.clone()).or_default();
                match &new {
                    Some(p) if intersects(key, &p.dirs) => changes.0.push(PresenceEntry {
                        id: id.clone(),
                        name: p.user.name.clone(),
                        busy: p.busy,
                    }),
                    _ if intersects(key, old_dirs) => changes.1.push(id.clone()),
                    _ => {}
                }
            }
            for dir in old_dirs.difference(new_dirs) {
                if let Some(members) = self.members.get_mut(dir) {
                    members.remove(&id);
                    if members.is_empty() {
                        self.members.remove(dir);
                    }
                }
            }
            for dir in new_dirs {
                self.members
                    .entry(dir.clone())
                    .or_default()
                    .insert(id.clone());
            }
            if let Some(new) = new {
                self.published.insert(id, new);
            }
        }
        let mut out = Vec::new();
        for (key, (users, offline)) in per_group {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.snapshot = None;
            if users.is_empty() && offline.is_empty() {
                continue;
            }
            out.push(Outgoing {
                sockets: group.sockets.iter().cloned().collect(),
                payload: raw(&serde_json::json!({ "users": users, "offline": offline })),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn user(id: &str, name: &str) -> User {
        User {
            id: UserId::new(id),
            name: name.into(),
        }
    }

    fn everyone() -> Dirs {
        dirs(["*"])
    }

    fn json(raw: &RawValue) -> Value {
        serde_json::from_str(raw.get()).unwrap()
    }

    #[test]
    fn users_stay_online_until_their_last_socket_goes() {
        let mut p = Presence::<u32>::default();
        let alice = user("a", "Alice");
        assert!(p.add_socket(&alice, 1, everyone()));
        assert!(!p.add_socket(&alice, 2, everyone()));
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
    fn snapshot_is_what_was_published_sorted() {
        let mut p = Presence::<u32>::default();
        p.add_socket(&user("b", "Bob"), 1, everyone());
        p.add_socket(&user("a", "Alice"), 2, everyone());
        // Nothing flushed yet: a snapshot lists nobody; the flush brings both.
        assert_eq!(
            json(&p.snapshot(&everyone()))["users"],
            serde_json::json!([])
        );
        let out = p.flush(|id| id.as_str() == "b");
        assert_eq!(out.len(), 1);
        let mut sockets = out[0].sockets.clone();
        sockets.sort();
        assert_eq!(sockets, [1, 2]);
        p.add_socket(&user("c", "Alice"), 3, everyone());
        let snap = json(&p.snapshot(&everyone()));
        let ids: Vec<_> = snap["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(snap["users"][1]["busy"], true);
        assert_eq!(p.all_sockets().count(), 3);
    }

    #[test]
    fn deltas_carry_only_changes_and_skip_no_ops() {
        let mut p = Presence::<u32>::default();
        let alice = user("a", "Alice");
        p.add_socket(&alice, 1, everyone());
        p.flush(|_| false);
        // A second tab changes nothing others see.
        p.add_socket(&alice, 2, everyone());
        assert!(p.flush(|_| false).is_empty());
        p.mark(&alice.id);
        let out = p.flush(|_| true);
        assert_eq!(json(&out[0].payload)["users"][0]["busy"], true);
        // Online and gone again within one interval: nobody hears of a stranger.
        p.add_socket(&user("z", "Zed"), 9, everyone());
        p.remove_socket(&UserId::new("z"), &9);
        assert!(p.flush(|_| true).is_empty());
        p.remove_socket(&alice.id, &1);
        p.remove_socket(&alice.id, &2);
        assert!(p.flush(|_| true).is_empty(), "nobody left to tell");
    }

    #[test]
    fn scopes_only_reach_sockets_sharing_a_directory() {
        let mut p = Presence::<u32>::default();
        p.add_socket(&user("a", "A"), 1, dirs(["r1"]));
        p.add_socket(&user("b", "B"), 2, dirs(["r1", "r2"]));
        p.add_socket(&user("c", "C"), 3, dirs(["r2"]));
        p.add_socket(&user("n", "Nobody"), 4, dirs::<[&str; 0], &str>([]));
        p.flush(|_| false);
        let seen = |p: &mut Presence<u32>, d: Dirs| {
            let snap = json(&p.snapshot(&d));
            let mut ids: Vec<String> = snap["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(seen(&mut p, dirs(["r1"])), ["a", "b"]);
        assert_eq!(seen(&mut p, dirs(["r2"])), ["b", "c"]);
        assert!(seen(&mut p, dirs::<[&str; 0], &str>([])).is_empty());
        // C goes: only the sockets that see r2 are told.
        p.remove_socket(&UserId::new("c"), &3);
        let out = p.flush(|_| false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].sockets, [2]);
        assert_eq!(json(&out[0].payload)["offline"], serde_json::json!(["c"]));
    }
}
