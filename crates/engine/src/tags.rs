//! The inverted index of one TAG field.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use shoal_index::RoaringBitmap;
use shoal_query::{TagOptions, TagPattern};

#[derive(Debug, Clone)]
pub struct TagIndex {
    options: TagOptions,
    /// Normalized tag → documents. Ordered, so a prefix is one range scan.
    postings: BTreeMap<String, RoaringBitmap>,
    /// What each document was indexed under, to remove it exactly.
    by_doc: HashMap<u32, Vec<String>>,
}

impl TagIndex {
    pub fn new(options: TagOptions) -> Self {
        TagIndex {
            options,
            postings: BTreeMap::new(),
            by_doc: HashMap::new(),
        }
    }

    /// Splits a field value into normalized tags: trimmed, case-folded unless
    /// CASESENSITIVE, empty ones dropped, each once.
    pub fn split(&self, value: &str) -> Vec<String> {
        let mut tags: Vec<String> = value
            .split(char::from(self.options.separator))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                if self.options.case_sensitive {
                    t.to_owned()
                } else {
                    t.to_lowercase()
                }
            })
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    pub fn insert(&mut self, doc: u32, tags: Vec<String>) {
        self.remove(doc);
        for tag in &tags {
            self.postings.entry(tag.clone()).or_default().insert(doc);
        }
        self.by_doc.insert(doc, tags);
    }

    pub fn remove(&mut self, doc: u32) {
        let Some(tags) = self.by_doc.remove(&doc) else {
            return;
        };
        for tag in tags {
            if let Some(bitmap) = self.postings.get_mut(&tag) {
                bitmap.remove(doc);
                if bitmap.is_empty() {
                    self.postings.remove(&tag);
                }
            }
        }
    }

    /// Documents carrying any of `patterns` (already case-folded by the planner).
    pub fn matching(&self, patterns: &[TagPattern]) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for pattern in patterns {
            if pattern.prefix {
                let range = self
                    .postings
                    .range::<str, _>((Bound::Included(pattern.text.as_str()), Bound::Unbounded));
                for (tag, docs) in range {
                    if !tag.starts_with(&pattern.text) {
                        break;
                    }
                    out |= docs;
                }
            } else if let Some(docs) = self.postings.get(&pattern.text) {
                out |= docs;
            }
        }
        out
    }

    /// Tags of a document, for FT.AGGREGATE and digests.
    pub fn tags_of(&self, doc: u32) -> Option<&[String]> {
        self.by_doc.get(&doc).map(Vec::as_slice)
    }

    pub fn distinct(&self) -> usize {
        self.postings.len()
    }

    pub fn bytes(&self) -> usize {
        self.postings
            .iter()
            .map(|(t, b)| t.len() + b.serialized_size() + 48)
            .sum::<usize>()
            + self.by_doc.len() * 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str, prefix: bool) -> TagPattern {
        TagPattern {
            text: text.into(),
            prefix,
        }
    }

    #[test]
    fn exact_prefix_and_removal() {
        let mut t = TagIndex::new(TagOptions {
            separator: b',',
            case_sensitive: false,
        });
        t.insert(1, t.split("Electronics, phones"));
        t.insert(2, t.split("electric"));
        t.insert(3, t.split("books"));
        assert_eq!(
            t.matching(&[pattern("electronics", false)])
                .iter()
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            t.matching(&[pattern("elec", true)])
                .iter()
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            t.matching(&[pattern("books", false), pattern("phones", false)])
                .len(),
            2
        );
        t.remove(1);
        assert_eq!(
            t.matching(&[pattern("elec", true)])
                .iter()
                .collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(t.distinct(), 2);
    }

    #[test]
    fn case_sensitive_keeps_case() {
        let mut t = TagIndex::new(TagOptions {
            separator: b'|',
            case_sensitive: true,
        });
        t.insert(7, t.split("A|b"));
        assert!(t.matching(&[pattern("a", false)]).is_empty());
        assert_eq!(t.matching(&[pattern("A", false)]).len(), 1);
    }
}
