//! The kinds of object the sandbox cluster serves, and how their URLs and discovery name them.

/// One resource the API server serves, as discovery describes it.
#[derive(Debug)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// The URL segment and the store's key, unique across the table.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Writes to the main resource keep the stored status; `/status` writes keep the rest.
    pub has_status: bool,
    /// Serves the `autoscaling/v1` Scale subresource.
    pub has_scale: bool,
}

impl ResourceType {
    /// `group/version`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name errors use: `deployments.apps`, or `pods` in the core group.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn resource(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        has_status: false,
        has_scale: false,
    }
}

const fn with_status(mut resource: ResourceType, scale: bool) -> ResourceType {
    resource.has_status = true;
    resource.has_scale = scale;
    resource
}

pub static NAMESPACES: ResourceType = with_status(
    resource(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
    ),
    false,
);
pub static PODS: ResourceType = with_status(
    resource("", "v1", "pods", "pod", "Pod", true, &["po"]),
    false,
);
pub static EVENTS: ResourceType = resource("", "v1", "events", "event", "Event", true, &["ev"]);
pub static DEPLOYMENTS: ResourceType = with_status(
    resource(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
    ),
    true,
);
pub static STATEFULSETS: ResourceType = with_status(
    resource(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
    ),
    true,
);
pub static REPLICASETS: ResourceType = with_status(
    resource(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
    ),
    true,
);
pub static HPAS: ResourceType = with_status(
    resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
    ),
    false,
);
pub static LEASES: ResourceType = resource(
    "coordination.k8s.io",
    "v1",
    "leases",
    "lease",
    "Lease",
    true,
    &[],
);
pub static SCALED_OBJECTS: ResourceType = with_status(
    resource(
        "keda.sh",
        "v1alpha1",
        "scaledobjects",
        "scaledobject",
        "ScaledObject",
        true,
        &["so"],
    ),
    false,
);

/// Every resource served, in discovery order.
pub static ALL: [&ResourceType; 9] = [
    &NAMESPACES,
    &PODS,
    &EVENTS,
    &DEPLOYMENTS,
    &STATEFULSETS,
    &REPLICASETS,
    &HPAS,
    &LEASES,
    &SCALED_OBJECTS,
];

/// The resource served at `group/version/plural`, if any.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The versions served of each group, in discovery order (the core group is not listed).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for resource in ALL.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == resource.group) {
            Some((_, versions)) if !versions.contains(&resource.version) => {
                versions.push(resource.version)
            }
            Some(_) => {}
            None => groups.push((resource.group, vec![resource.version])),
        }
    }
    groups
}

/// The resources of one group version.
pub fn in_group(group: &str, version: &str) -> Vec<&'static ResourceType> {
    ALL.iter()
        .copied()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_found_by_url_and_by_kind() {
        assert_eq!(
            find("apps", "v1", "deployments").map(|r| r.kind),
            Some("Deployment")
        );
        assert!(find("apps", "v2", "deployments").is_none());
        assert_eq!(by_kind("v1", "Pod").map(|r| r.plural), Some("pods"));
        assert_eq!(DEPLOYMENTS.qualified(), "deployments.apps");
        assert_eq!(PODS.qualified(), "pods");
    }

    #[test]
    fn plurals_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.plural, b.plural);
            }
        }
    }
}
