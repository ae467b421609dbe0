//! The frozen prefix's outputs, kept on the device so repeated inputs skip the frozen part of
//! the backbone (and the driver skips decoding them). Bounded by a byte budget: past it, new
//! entries are simply not kept, and the prefix runs again.

use std::collections::HashMap;

use burn::tensor::Tensor;

use super::finetune::Part;

/// What a cached activation is the output of: an example, and its augmentation variant (0 when
/// not augmented).
pub(crate) type CacheKey = (Part, usize, usize);

/// Frozen-prefix activations, one `[1, C, H, W]` tensor per key, within a byte budget.
pub(crate) struct PrefixCache {
    entries: HashMap<CacheKey, Tensor<4>>,
    bytes: usize,
    budget: usize,
}

impl PrefixCache {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn get_all(&self, keys: &[CacheKey]) -> Option<Vec<Tensor<4>>> {
        keys.iter()
            .map(|key| self.entries.get(key).cloned())
            .collect()
    }

    /// Keeps each row of `batch` while the budget allows.
    pub(crate) fn insert_batch(&mut self, keys: &[CacheKey], batch: &Tensor<4>) {
        let [_, c, h, w] = batch.dims();
        let per_item = c * h * w * size_of::<f32>();
        for (row, &key) in keys.iter().enumerate() {
            if self.entries.contains_key(&key) {
                continue;
            }
            if self.bytes + per_item > self.budget {
                return;
            }
            // A copy, not a view: a view would keep the whole batch's buffer alive.
            let item = batch.clone().narrow(0, row, 1) * 1.0;
            self.entries.insert(key, item);
            self.bytes += per_item;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn cache_stays_within_its_budget() {
        let device = Device::flex();
        let batch = Tensor::<4>::ones([3, 2, 4, 4], &device); // 128 bytes per item
        let keys: Vec<CacheKey> = (0..3).map(|i| (Part::Validation, i, 0)).collect();
        let mut cache = PrefixCache::new(300);
        cache.insert_batch(&keys, &batch);
        assert_eq!(cache.bytes(), 256);
        assert!(cache.get_all(&keys[..2]).is_some());
        assert!(cache.get_all(&keys).is_none());
        assert_eq!(cache.get_all(&keys[..1]).unwrap()[0].dims(), [1, 2, 4, 4]);
    }
}
