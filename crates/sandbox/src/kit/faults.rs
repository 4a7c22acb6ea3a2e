//! Checks of the fault settings both sandboxes take at `PUT /__sandbox/faults`
//! (`error_rate`, `error_status`, …): every problem is listed, so one request tells a caller
//! all that is wrong with it.

/// Appends a problem when a fraction is outside 0–1.
pub fn check_fraction(problems: &mut Vec<String>, name: &str, value: Option<f64>) {
    if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
        problems.push(format!("{name} must be within 0..=1, got {v}"));
    }
}

/// The problems of the settings both sandboxes share.
pub fn check_common(error_rate: Option<f64>, error_status: Option<u16>) -> Vec<String> {
    let mut problems = Vec::new();
    check_fraction(&mut problems, "error_rate", error_rate);
    if let Some(status) = error_status.filter(|s| !(400..=599).contains(s)) {
        problems.push(format!(
            "error_status must be within 400..=599, got {status}"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed() {
        let p = check_common(Some(1.5), Some(200));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("error_rate") && p[1].starts_with("error_status"));
        assert!(check_common(Some(0.5), Some(503)).is_empty());
        assert!(check_common(None, None).is_empty());
    }
}
