//! A variable change, shared by the U-Boot and GRUB codecs: set a value or
//! remove the variable. Both codecs apply a slice of changes as one batch.

use core::fmt;

/// Why a variable change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeError {
    /// The name is empty (U-Boot would then fail to import the env; GRUB
    /// would store a line it cannot look up).
    EmptyName,
    /// The name contains `=`.
    NameContainsEquals,
    /// The name or the value contains a NUL byte (both bootloaders use C
    /// strings).
    ContainsNul,
    /// GRUB only: the name contains a newline (it would split the line).
    NameContainsNewline,
    /// GRUB only: the name starts with `#` (the line would read as a
    /// comment).
    NameStartsWithHash,
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeError::EmptyName => "variable name is empty",
            ChangeError::NameContainsEquals => "variable name contains '='",
            ChangeError::ContainsNul => "variable name or value contains a NUL byte",
            ChangeError::NameContainsNewline => "variable name contains a newline",
            ChangeError::NameStartsWithHash => "variable name starts with '#'",
        })
    }
}

impl core::error::Error for ChangeError {}

/// A change that failed validation, with its position in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidChange {
    /// Index of the change in the slice.
    pub index: usize,
    /// What is wrong with it.
    pub error: ChangeError,
}

impl fmt::Display for InvalidChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "change #{}: {}", self.index, self.error)
    }
}

impl core::error::Error for InvalidChange {}

/// One variable change of a batch: set a value or remove the variable.
///
/// Setting an empty value stores `name=` (as `fw_setenv NAME ""` and
/// `grub-editenv FILE set NAME=` do); U-Boot treats that as unset. Use
/// [`Change::remove`] to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    name: &'a [u8],
    value: Option<&'a [u8]>,
}

impl<'a> Change<'a> {
    /// Set `name` to `value`.
    pub const fn set(name: &'a str, value: &'a str) -> Self {
        Change {
            name: name.as_bytes(),
            value: Some(value.as_bytes()),
        }
    }

    /// Set `name` to `value`, both raw bytes.
    pub const fn set_bytes(name: &'a [u8], value: &'a [u8]) -> Self {
        Change {
            name,
            value: Some(value),
        }
    }

    /// Remove `name`.
    pub const fn remove(name: &'a str) -> Self {
        Change {
            name: name.as_bytes(),
            value: None,
        }
    }

    /// Remove `name`, given as raw bytes.
    pub const fn remove_bytes(name: &'a [u8]) -> Self {
        Change { name, value: None }
    }

    /// The variable name.
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// The new value, `None` for a removal.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// Checks the change can be stored in a U-Boot env: name not empty, no
    /// `=` in the name, no NUL anywhere.
    pub fn validate_uboot(&self) -> Result<(), ChangeError> {
        if self.name.is_empty() {
            return Err(ChangeError::EmptyName);
        }
        if self.name.contains(&b'=') {
            return Err(ChangeError::NameContainsEquals);
        }
        if self.name.contains(&0) || self.value.is_some_and(|v| v.contains(&0)) {
            return Err(ChangeError::ContainsNul);
        }
        Ok(())
    }

    /// Checks the change can be stored in a GRUB env block: the U-Boot
    /// rules, plus no newline in the name and no `#` at its start.
    pub fn validate_grub(&self) -> Result<(), ChangeError> {
        self.validate_uboot()?;
        if self.name.contains(&b'\n') {
            return Err(ChangeError::NameContainsNewline);
        }
        if self.name.first() == Some(&b'#') {
            return Err(ChangeError::NameStartsWithHash);
        }
        Ok(())
    }
}
