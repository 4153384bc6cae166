//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! package does it: the leader renews the Lease before it expires; anyone else takes it over
//! once its holder stopped renewing for a lease duration; an update that loses the race (409)
//! means another candidate won.
//!
//! So that two Pilothouse daemons in a cluster never both scale a workload: the one that does
//! not lead stands by and shows who does. Not for deciding what the leader does.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

use super::actions::{ActionError, Op};

/// Who leads, as the last attempt found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This candidate holds the Lease.
    Leader,
    /// Someone else holds it, until `until` unless they renew it.
    Follower {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// What a candidate is to do with the Lease as it reads it, decided by [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// This candidate holds it: renew it.
    Renew,
    /// Nobody holds it (released, or never renewed in time): take it, counting a transition.
    TakeOver { transitions: i32 },
    /// Another candidate holds it and it has not expired.
    Wait {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// Decides from a Lease as read, the time now and this candidate's identity what to do.
///
/// A Lease expires `leaseDurationSeconds` after its `renewTime` (its `acquireTime` when it was
/// never renewed); one with no holder is free at once.
// LIMITATION: expiry is judged by the Lease's own timestamps, so candidates whose clocks
// disagree by more than the margin between renew deadline and lease duration can overlap;
// client-go measures from when it last saw the Lease change instead.
pub fn decide(lease: Option<&LeaseSpec>, now: DateTime<Utc>, identity: &str) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver {
            transitions: transitions.saturating_add(1),
        };
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .and_then(from_micro);
    let duration = TimeDelta::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    match renewed {
        Some(renewed) if renewed + duration > now => Decision::Wait {
            holder,
            until: renewed + duration,
        },
        _ => Decision::TakeOver {
            transitions: transitions.saturating_add(1),
        },
    }
}

fn from_micro(time: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(time.0.as_microsecond())
}

fn to_micro(time: DateTime<Utc>) -> MicroTime {
    // A chrono time always lies within jiff's range (years -9999..=9999) for any clock reading
    // this program can see; the epoch stands in for one that does not.
    MicroTime(Timestamp::from_microsecond(time.timestamp_micros()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// One candidate for leadership through one Lease.
pub struct Elector {
    client: kube::Client,
    namespace: String,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    /// When this candidate last renewed (or took) the Lease successfully.
    renewed: Option<DateTime<Utc>>,
}

impl Elector {
    /// A candidate; the durations must relate as client-go requires: the lease duration above
    /// the renew deadline, and the renew deadline above 1.2 retry periods.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Elector, ActionError> {
        if identity.trim().is_empty() {
            return Err(ActionError::Refused(format!(
                "leader election on lease {namespace}/{name} needs a non-empty identity"
            )));
        }
        if namespace.is_empty() || name.is_empty() {
            return Err(ActionError::Refused(format!(
                "leader election needs a lease namespace and name, not {namespace:?}/{name:?}"
            )));
        }
        if lease_duration <= renew_deadline
            || renew_deadline.as_secs_f64() <= 1.2 * retry_period.as_secs_f64()
        {
            return Err(ActionError::Refused(format!(
                "leader election on lease {namespace}/{name}: the lease duration ({lease_duration:?}) \
                 must be above the renew deadline ({renew_deadline:?}), and that above 1.2 retry \
                 periods ({retry_period:?})"
            )));
        }
        if lease_duration.as_secs() == 0 {
            return Err(ActionError::Refused(format!(
                "leader election on lease {namespace}/{name}: the lease duration must be at \
                 least one second, as leaseDurationSeconds counts whole seconds"
            )));
        }
        Ok(Elector {
            client,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
            renew_deadline,
            retry_period,
            renewed: None,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How long to wait between attempts.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// Whether this candidate may still act as leader at `now`: it renewed within the renew
    /// deadline. A leader that could not renew for that long must stop acting.
    pub fn is_leader(&self, now: DateTime<Utc>) -> bool {
        let deadline = TimeDelta::from_std(self.renew_deadline).unwrap_or(TimeDelta::zero());
        self.renewed.is_some_and(|at| now - at < deadline)
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn op(&self, verb: &'static str) -> Op<'_> {
        Op {
            verb,
            resource: "leases",
            namespace: &self.namespace,
            name: &self.name,
        }
    }

    fn duration_seconds(&self) -> i32 {
        let whole =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(whole).unwrap_or(i32::MAX)
    }

    /// Creates the Lease, takes it over, renews it, or finds who holds it. Losing a race for it
    /// (409) is not an error: someone else leads.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Leadership, ActionError> {
        let found = self
            .api()
            .get_opt(&self.name)
            .await
            .map_err(|e| self.op("get").fail(e))?;
        let now = Utc::now();
        match decide(
            found.as_ref().and_then(|l| l.spec.as_ref()),
            now,
            &self.identity,
        ) {
            Decision::Wait { holder, until } => {
                self.renewed = None;
                Ok(Leadership::Follower { holder, until })
            }
            Decision::Create => self.create(now).await,
            Decision::Renew => {
                let mut lease = found.unwrap_or_default();
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.renew_time = Some(to_micro(now));
                spec.lease_duration_seconds = Some(self.duration_seconds());
                if spec.acquire_time.is_none() {
                    spec.acquire_time = Some(to_micro(now));
                }
                self.update(lease, now).await
            }
            Decision::TakeOver { transitions } => {
                let mut lease = found.unwrap_or_default();
                let previous = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(to_micro(now));
                spec.renew_time = Some(to_micro(now));
                spec.lease_duration_seconds = Some(self.duration_seconds());
                spec.lease_transitions = Some(transitions);
                let result = self.update(lease, now).await;
                if matches!(result, Ok(Leadership::Leader)) {
                    // `previous` is left out when the Lease was free (no holder, or one that let go).
                    let previous = previous.as_deref().filter(|p| !p.is_empty());
                    info!(lease = %self.name, identity = %self.identity, previous, "took over the lease");
                }
                result
            }
        }
    }

    async fn create(&mut self, now: DateTime<Utc>) -> Result<Leadership, ActionError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                acquire_time: Some(to_micro(now)),
                renew_time: Some(to_micro(now)),
                lease_duration_seconds: Some(self.duration_seconds()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api().create(&PostParams::default(), &lease).await {
            Ok(_) => {
                info!(lease = %self.name, identity = %self.identity, "created the lease and leads");
                self.renewed = Some(now);
                Ok(Leadership::Leader)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                debug!(lease = %self.name, "another candidate created the lease first");
                self.follower_now().await
            }
            Err(e) => Err(self.op("create").fail(e)),
        }
    }

    /// Writes the Lease back, conditional on the resourceVersion read.
    async fn update(
        &mut self,
        lease: Lease,
        now: DateTime<Utc>,
    ) -> Result<Leadership, ActionError> {
        match self
            .api()
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.renewed = Some(now);
                Ok(Leadership::Leader)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                debug!(lease = %self.name, "another candidate updated the lease first");
                self.follower_now().await
            }
            Err(e) => {
                if self.renewed.is_some() && !self.is_leader(Utc::now()) {
                    warn!(lease = %self.name, "could not renew the lease within the renew deadline: leadership lost");
                    self.renewed = None;
                }
                Err(self.op("update").fail(e))
            }
        }
    }

    /// Who holds the Lease after a race was lost.
    async fn follower_now(&mut self) -> Result<Leadership, ActionError> {
        self.renewed = None;
        let found = self
            .api()
            .get_opt(&self.name)
            .await
            .map_err(|e| self.op("get").fail(e))?;
        let spec = found.and_then(|l| l.spec);
        let holder = spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        let until = match decide(spec.as_ref(), Utc::now(), &self.identity) {
            Decision::Wait { until, .. } => until,
            _ => Utc::now(),
        };
        Ok(Leadership::Follower { holder, until })
    }

    /// Gives the Lease up if this candidate holds it, so another can take it at once: the
    /// holder is emptied and the duration set to one second, as client-go does.
    pub async fn release(&mut self) {
        let held = self.renewed.take().is_some();
        if !held {
            return;
        }
        let found = match self.api().get_opt(&self.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(e) => {
                warn!(lease = %self.name, error = %self.op("get").fail(e), "could not release the lease");
                return;
            }
        };
        let mut lease = found;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = to_micro(Utc::now());
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self
            .api()
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.name, identity = %self.identity, "released the lease"),
            Err(e) => {
                warn!(lease = %self.name, error = %self.op("update").fail(e), "could not release the lease")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn held_by(holder: &str, renewed: i64, duration: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            acquire_time: Some(to_micro(at(0))),
            renew_time: Some(to_micro(at(renewed))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(decide(None, at(0), "a"), Decision::Create);
    }

    #[test]
    fn a_lease_held_by_this_candidate_is_renewed_even_when_expired() {
        let lease = held_by("a", 0, 10, 3);
        assert_eq!(decide(Some(&lease), at(5), "a"), Decision::Renew);
        assert_eq!(decide(Some(&lease), at(50), "a"), Decision::Renew);
    }

    #[test]
    fn another_holder_is_waited_for_until_its_lease_expires() {
        let lease = held_by("b", 20, 10, 3);
        assert_eq!(
            decide(Some(&lease), at(29), "a"),
            Decision::Wait {
                holder: "b".into(),
                until: at(30)
            }
        );
        assert_eq!(
            decide(Some(&lease), at(30), "a"),
            Decision::TakeOver { transitions: 4 }
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut lease = held_by("", 20, 1, 2);
        lease.holder_identity = Some(String::new());
        assert_eq!(
            decide(Some(&lease), at(20), "a"),
            Decision::TakeOver { transitions: 3 }
        );
    }

    #[test]
    fn a_lease_never_renewed_expires_from_its_acquire_time() {
        let mut lease = held_by("b", 0, 10, 0);
        lease.renew_time = None;
        assert!(matches!(
            decide(Some(&lease), at(9), "a"),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(Some(&lease), at(10), "a"),
            Decision::TakeOver { transitions: 1 }
        );
    }

    #[test]
    fn micro_times_keep_microseconds() {
        let time = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        assert_eq!(from_micro(&to_micro(time)), Some(time));
    }
}
