//! [`LineBatch`]: the lines of one poll in one buffer, as they travel from a source's thread to
//! the engine.

/// Lines in one string plus their end offsets: one allocation per batch (amortised), not one
/// per line. At catch-up speed (hundreds of thousands of lines a second) a `String` per line
/// was a malloc and a free per line, and a million small heap blocks for a large backlog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineBatch {
    text: String,
    ends: Vec<usize>,
}

impl LineBatch {
    /// Append one line (without its newline).
    pub fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.ends.push(self.text.len());
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held (newlines not counted).
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// The last line, if any.
    pub fn last(&self) -> Option<&str> {
        let end = *self.ends.last()?;
        let start = self.ends.len().checked_sub(2).map_or(0, |i| self.ends[i]);
        Some(&self.text[start..end])
    }

    /// The lines, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = &self.text[start..end];
            start = end;
            line
        })
    }
}

impl<S: AsRef<str>> FromIterator<S> for LineBatch {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut b = LineBatch::default();
        for l in iter {
            b.push(l.as_ref());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::LineBatch;

    #[test]
    fn lines_come_back_as_pushed_including_empty_ones() {
        let lines = ["a", "", "ünïcode ✓", "", "last"];
        let b: LineBatch = lines.iter().collect();
        assert_eq!(b.len(), 5);
        assert_eq!(b.iter().collect::<Vec<_>>(), lines);
        assert!(LineBatch::default().is_empty());
        assert_eq!(LineBatch::default().iter().count(), 0);
    }

    #[test]
    fn last_is_the_last_line_pushed() {
        assert_eq!(LineBatch::default().last(), None);
        let one: LineBatch = ["only"].iter().collect();
        assert_eq!(one.last(), Some("only"));
        let two: LineBatch = ["first", "second"].iter().collect();
        assert_eq!(two.last(), Some("second"));
        let empty_last: LineBatch = ["first", ""].iter().collect();
        assert_eq!(empty_last.last(), Some(""));
    }
}
