//! The examples a user is collecting, class by class, each with a stable id and content hash:
//! what the browser engine holds between calls (the CLI reads a folder instead).
//!
//! Ids are the caller's (the web app uses its IndexedDB keys), so the engine, the worker and
//! storage name an image the same way; a class is renamed in one place. An image already
//! present (same content hash) is refused: a duplicate would count twice, and could sit on
//! both sides of the validation split.

use std::collections::HashMap;

use serde::Serialize;

use super::limits::check_training_size;
use super::session::{Example, TrainingSet};
use crate::error::{GraftError, Result};
use crate::model::FEATURE_DIM;

/// One class's name and number of examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    pub label: String,
    pub count: usize,
}

/// Classes in the order they were created, and their examples with embeddings.
#[derive(Debug, Default)]
pub struct ExampleStore {
    classes: Vec<String>,
    /// `examples[i]` has embedding row `i`; `label` indexes `classes`.
    examples: Vec<Example>,
    embeddings: Vec<f32>,
    by_hash: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
}

/// Trims a label and refuses an empty one.
fn clean_label(label: &str) -> Result<&str> {
    let label = label.trim();
    if label.is_empty() {
        return Err(GraftError::option("label", "a class label cannot be empty"));
    }
    Ok(label)
}

impl ExampleStore {
    /// Examples per class, in class order.
    fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        self.examples.iter().for_each(|e| counts[e.label] += 1);
        counts
    }

    pub fn classes(&self) -> Vec<ClassCount> {
        self.classes
            .iter()
            .zip(self.counts())
            .map(|(label, count)| ClassCount {
                label: label.clone(),
                count,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The example already holding this image, as `'id' in class 'label'`, if any.
    pub fn duplicate_of(&self, hash: &str) -> Option<String> {
        self.by_hash.get(hash).map(|&i| {
            let example = &self.examples[i];
            format!(
                "'{}' in class '{}'",
                example.id, self.classes[example.label]
            )
        })
    }

    /// Refuses `count` more examples for the class `label` when the examples could then no
    /// longer be trained on (see [`super::limits`]): front ends ask before embedding them.
    pub fn check_room(&self, label: &str, count: usize) -> Result<()> {
        let label = clean_label(label)?;
        let new_class = !self.classes.iter().any(|c| c == label);
        check_training_size(
            self.examples.len() + count,
            self.classes.len() + usize::from(new_class),
            None,
        )
    }

    /// Adds examples (`ids[i]` with `hashes[i]` and embedding row `i`) to the class `label`,
    /// created if new. All or nothing: a repeated id or image, or more examples than could be
    /// trained on, refuses the whole call.
    pub fn add(
        &mut self,
        label: &str,
        ids: &[String],
        hashes: &[String],
        embeddings: &[f32],
    ) -> Result<()> {
        let label = clean_label(label)?;
        if ids.len() != hashes.len() || embeddings.len() != ids.len() * FEATURE_DIM {
            return Err(GraftError::option(
                "embeddings",
                format!(
                    "{} ids, {} hashes and {} numbers; each example needs an id, a hash and \
                     {FEATURE_DIM} numbers",
                    ids.len(),
                    hashes.len(),
                    embeddings.len()
                ),
            ));
        }
        if embeddings.iter().any(|v| !v.is_finite()) {
            return Err(GraftError::option(
                "embeddings",
                "they contain NaN or infinite values",
            ));
        }
        self.check_room(label, ids.len())?;
        let mut new_ids = std::collections::HashSet::new();
        let mut new_hashes = std::collections::HashSet::new();
        for (id, hash) in ids.iter().zip(hashes) {
            if id.is_empty() || self.by_id.contains_key(id) || !new_ids.insert(id) {
                return Err(GraftError::AlreadyExists {
                    what: "example id",
                    name: id.clone(),
                });
            }
            if let Some(existing) = self.duplicate_of(hash) {
                return Err(GraftError::DuplicateImage {
                    id: id.clone(),
                    existing,
                });
            }
            if !new_hashes.insert(hash) {
                return Err(GraftError::DuplicateImage {
                    id: id.clone(),
                    existing: "another image of this call".into(),
                });
            }
        }
        let class = match self.classes.iter().position(|c| c == label) {
            Some(class) => class,
            None => {
                self.classes.push(label.to_string());
                self.classes.len() - 1
            }
        };
        for (id, hash) in ids.iter().zip(hashes) {
            self.by_id.insert(id.clone(), self.examples.len());
            self.by_hash.insert(hash.clone(), self.examples.len());
            self.examples.push(Example {
                id: id.clone(),
                hash: hash.clone(),
                label: class,
            });
        }
        self.embeddings.extend_from_slice(embeddings);
        Ok(())
    }

    /// Removes examples by id; every id must exist (nothing is removed otherwise).
    pub fn remove_examples(&mut self, ids: &[String]) -> Result<()> {
        if let Some(unknown) = ids.iter().find(|id| !self.by_id.contains_key(*id)) {
            return Err(GraftError::NotFound {
                what: "example",
                name: unknown.clone(),
            });
        }
        let gone: std::collections::HashSet<&String> = ids.iter().collect();
        self.retain(|example| !gone.contains(&example.id));
        Ok(())
    }

    /// Removes a class and all its examples; returns their ids.
    pub fn remove_class(&mut self, label: &str) -> Result<Vec<String>> {
        let class = self.class_index(label)?;
        let removed = self
            .examples
            .iter()
            .filter(|e| e.label == class)
            .map(|e| e.id.clone())
            .collect();
        self.retain(|example| example.label != class);
        self.classes.remove(class);
        for example in &mut self.examples {
            if example.label > class {
                example.label -= 1;
            }
        }
        Ok(removed)
    }

    pub fn rename_class(&mut self, from: &str, to: &str) -> Result<()> {
        let to = clean_label(to)?;
        let class = self.class_index(from)?;
        if from != to && self.classes.iter().any(|c| c == to) {
            return Err(GraftError::AlreadyExists {
                what: "class",
                name: to.to_string(),
            });
        }
        self.classes[class] = to.to_string();
        Ok(())
    }

    /// Everything, ready for [`super::session::train`]: classes without examples are left out.
    pub fn training_set(&self) -> TrainingSet {
        let counts = self.counts();
        let used: Vec<usize> = (0..self.classes.len()).filter(|&c| counts[c] > 0).collect();
        let renumber: HashMap<usize, usize> = used
            .iter()
            .enumerate()
            .map(|(new, &old)| (old, new))
            .collect();
        TrainingSet {
            labels: used.iter().map(|&c| self.classes[c].clone()).collect(),
            examples: self
                .examples
                .iter()
                .map(|e| Example {
                    label: renumber[&e.label],
                    ..e.clone()
                })
                .collect(),
            embeddings: self.embeddings.clone(),
            fixed_validation: None,
            skipped: Vec::new(),
        }
    }

    fn class_index(&self, label: &str) -> Result<usize> {
        self.classes
            .iter()
            .position(|c| c == label)
            .ok_or_else(|| GraftError::NotFound {
                what: "class",
                name: label.to_string(),
            })
    }

    /// Keeps the examples `keep` accepts, with their embeddings, and rebuilds the indices.
    fn retain(&mut self, keep: impl Fn(&Example) -> bool) {
        let mut examples = Vec::with_capacity(self.examples.len());
        let mut embeddings = Vec::with_capacity(self.embeddings.len());
        for (example, row) in self
            .examples
            .drain(..)
            .zip(self.embeddings.chunks(FEATURE_DIM))
        {
            if keep(&example) {
                examples.push(example);
                embeddings.extend_from_slice(row);
            }
        }
        self.examples = examples;
        self.embeddings = embeddings;
        self.by_id = self
            .examples
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        self.by_hash = self
            .examples
            .iter()
            .enumerate()
            .map(|(i, e)| (e.hash.clone(), i))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    fn rows(n: usize, value: f32) -> Vec<f32> {
        vec![value; n * FEATURE_DIM]
    }

    #[test]
    fn examples_are_added_removed_and_renamed_by_id() {
        let mut store = ExampleStore::default();
        store
            .add(
                " cats ",
                &strings(&["a", "b"]),
                &strings(&["h1", "h2"]),
                &rows(2, 1.0),
            )
            .unwrap();
        store
            .add("dogs", &strings(&["c"]), &strings(&["h3"]), &rows(1, 2.0))
            .unwrap();
        assert_eq!(
            store.classes()[0],
            ClassCount {
                label: "cats".into(),
                count: 2
            }
        );

        store.remove_examples(&strings(&["a"])).unwrap();
        let set = store.training_set();
        assert_eq!(set.labels, ["cats", "dogs"]);
        assert_eq!(
            set.examples
                .iter()
                .map(|e| e.id.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(set.embeddings[0], 1.0);
        assert_eq!(set.embeddings[FEATURE_DIM], 2.0);

        store.rename_class("cats", "felines").unwrap();
        assert_eq!(store.classes()[0].label, "felines");
        assert_eq!(store.remove_class("felines").unwrap(), ["b"]);
        let set = store.training_set();
        assert_eq!(set.labels, ["dogs"]);
        assert_eq!(set.examples[0].label, 0);
        // The removed image may come back.
        store
            .add("cats", &strings(&["a2"]), &strings(&["h1"]), &rows(1, 1.0))
            .unwrap();
    }

    #[test]
    fn duplicates_and_unknown_names_are_refused_with_their_code() {
        let mut store = ExampleStore::default();
        store
            .add("cats", &strings(&["a"]), &strings(&["h1"]), &rows(1, 0.0))
            .unwrap();
        let again = store
            .add("dogs", &strings(&["b"]), &strings(&["h1"]), &rows(1, 0.0))
            .unwrap_err();
        assert_eq!(again.code(), "ALREADY_EXISTS");
        assert!(
            again
                .to_string()
                .contains("the same image as 'a' in class 'cats'"),
            "{again}"
        );
        let same_id = store
            .add("cats", &strings(&["a"]), &strings(&["h2"]), &rows(1, 0.0))
            .unwrap_err();
        assert_eq!(same_id.code(), "ALREADY_EXISTS");
        assert_eq!(store.len(), 1, "a refused call adds nothing");
        assert_eq!(
            store
                .remove_examples(&strings(&["nope"]))
                .unwrap_err()
                .code(),
            "NOT_FOUND"
        );
        assert_eq!(store.remove_class("nope").unwrap_err().code(), "NOT_FOUND");
        store
            .add("dogs", &strings(&["b"]), &strings(&["h2"]), &rows(1, 0.0))
            .unwrap();
        assert_eq!(
            store.rename_class("dogs", "cats").unwrap_err().code(),
            "ALREADY_EXISTS"
        );
        assert_eq!(
            store
                .add(" ", &strings(&["c"]), &strings(&["h3"]), &rows(1, 0.0))
                .unwrap_err()
                .code(),
            "INVALID_OPTION"
        );
        let nan = store
            .add(
                "dogs",
                &strings(&["c"]),
                &strings(&["h3"]),
                &rows(1, f32::NAN),
            )
            .unwrap_err();
        assert!(nan.to_string().contains("NaN"));
    }
}
