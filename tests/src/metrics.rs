//! Reading an edge's Prometheus text: scraping it and picking samples.

use crate::ResponseExt;
use crate::TestEdge;
use crate::client;

impl TestEdge {
    /// The admin listener's `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        client::get(&self.admin_url("/metrics")).await.text()
    }
}

/// The value of the first sample whose line starts with `prefix` (the
/// name, and the labels in the order the edge exports them).
pub fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every sample of metric `name` (all label sets).
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
