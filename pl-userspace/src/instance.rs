//! Instance names: what `--instance` may be. One check, since the name becomes both the
//! control socket's name and part of the state's paths.

/// An instance name pl refuses.
#[derive(Debug, thiserror::Error)]
#[error("instance name {instance:?}: use 1-64 characters from a-z, 0-9, '-', '_'")]
pub struct BadInstance {
    pub instance: String,
}

/// Accepts 1-64 characters from a-z, 0-9, '-' and '_' (safe in a path and a socket name).
pub fn check(instance: &str) -> Result<(), BadInstance> {
    let ok = !instance.is_empty()
        && instance.len() <= 64
        && instance
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BadInstance {
            instance: instance.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check("default").is_ok());
        assert!(check("a-b_9").is_ok());
        for bad in ["", "Upper", "a/b", "sp ace", &"x".repeat(65)] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_refusal_reads_as_before() {
        let e = check("A").expect_err("refused");
        assert_eq!(
            e.to_string(),
            "instance name \"A\": use 1-64 characters from a-z, 0-9, '-', '_'"
        );
    }
}
