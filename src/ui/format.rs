//! Number and time formatting shared by the panels: bytes, CPU, ages.
//!
//! Not for text from containers: that goes through `crate::text`.

use chrono::TimeDelta;

/// Bytes in the short form tables use: `512B`, `210M`, `1.2G`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        value /= 1024.0;
        unit = u;
        if value < 1024.0 {
            break;
        }
    }
    if value < 10.0 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.0}{unit}")
    }
}

/// CPU percent of one core: `0.4%`, `38%`, `210%`.
pub fn human_cpu(percent: f64) -> String {
    if percent < 10.0 {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.0}%")
    }
}

/// An age in its largest whole unit: `45s`, `12m`, `3h`, `5d`; negative ages read as `0s`.
pub fn human_age(age: TimeDelta) -> String {
    let secs = age.num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units_with_one_decimal_below_ten() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(210 * 1024 * 1024), "210M");
        assert_eq!(human_bytes(1288490188), "1.2G");
    }

    #[test]
    fn ages_are_shown_in_their_largest_whole_unit() {
        assert_eq!(human_age(TimeDelta::seconds(45)), "45s");
        assert_eq!(human_age(TimeDelta::seconds(3 * 3600 + 59)), "3h");
        assert_eq!(human_age(TimeDelta::seconds(-5)), "0s");
        assert_eq!(human_age(TimeDelta::days(5)), "5d");
    }

    #[test]
    fn cpu_keeps_a_decimal_only_for_small_values() {
        assert_eq!(human_cpu(0.42), "0.4%");
        assert_eq!(human_cpu(38.2), "38%");
    }
}
