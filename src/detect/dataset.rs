//! Detection datasets in the Ultralytics YOLO layout: a `data.yaml` that names the classes and
//! each split's image folders, and beside `images/` a `labels/` tree with one text file an
//! image, one box a line.
//!
//! `data.yaml` is read by a small parser for the subset these files use, not a YAML crate, so
//! the browser build stays small; anything it cannot read is refused with the line at fault,
//! never guessed at. Parsing is pure functions on text, for the browser to reuse; listing
//! folders and reading files is native only.

use std::path::{Component, Path, PathBuf};

use crate::detect::boxes::BoundingBox;
use crate::error::{GraftError, Result};

/// How far (in fractions of the image) a box's edge may stray outside the image and be clipped
/// rather than refused: labelling tools round.
pub const EDGE_TOLERANCE: f64 = 1e-3;

/// The largest `data.yaml` or label file read (a label file of this size lists some 25,000
/// boxes); larger ones are refused, naming the file, before they are read.
pub const MAX_TEXT_FILE_BYTES: u64 = 1 << 20;

/// Refuses a text file of `bytes` past [`MAX_TEXT_FILE_BYTES`].
fn check_text_size(path: &Path, bytes: u64) -> Result<()> {
    if bytes > MAX_TEXT_FILE_BYTES {
        return Err(GraftError::TooLarge {
            what: path.display().to_string(),
            reason: format!(
                "{bytes} bytes; a data.yaml or label file may have at most {MAX_TEXT_FILE_BYTES}"
            ),
        });
    }
    Ok(())
}

/// The image files a split folder is searched for (any case).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "bmp", "gif"];

/// The parts of a dataset `data.yaml` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    /// The key that names the split's folders in `data.yaml`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Val => "val",
            Self::Test => "test",
        }
    }
}

/// What Graft reads from a `data.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataConfig {
    /// `path:` as written: the dataset root, relative to the yaml's folder unless absolute;
    /// `None` when absent or empty (the root is then the yaml's folder).
    pub path: Option<String>,
    /// Image folders relative to the root (e.g. `images/train`); one or more.
    pub train: Vec<String>,
    pub val: Vec<String>,
    /// Empty when the dataset has no test split.
    pub test: Vec<String>,
    /// Class names; a box's class is an index into them.
    pub names: Vec<String>,
}

impl DataConfig {
    /// The folders of a split, relative to [`DataConfig::root`].
    pub fn folders(&self, split: Split) -> &[String] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// The dataset root: `path` resolved against the folder holding `data.yaml`. (Ultralytics
    /// would also look for a relative `path` under its own datasets folder; Graft does not.)
    pub fn root(&self, yaml_dir: &Path) -> PathBuf {
        match &self.path {
            Some(path) => yaml_dir.join(path),
            None => yaml_dir.to_path_buf(),
        }
    }
}

/// One object in an image: its class and where it is, in fractions of the image's width and
/// height (corners within [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelledBox {
    pub class: usize,
    pub bbox: BoundingBox,
}

/// An image file and the objects its label file lists (none when it has no label file).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    pub image: PathBuf,
    pub boxes: Vec<LabelledBox>,
}

// ---------------------------------------------------------------------------------------------
// data.yaml

/// A `data.yaml` in the subset Graft reads: top-level `key: value` lines; `#` comments; plain,
/// 'single-' or "double-quoted" scalars; lists as `- item` lines or `[a, b]`; and `names` also
/// as `id: name` lines. Keys other than `path`, `train`, `val`, `test`, `names` and `nc` are
/// skipped together with the lines indented under them (e.g. a `download: |` script). `origin`
/// names the file in errors.
pub fn parse_data_yaml(text: &str, origin: &str) -> Result<DataConfig> {
    data_config(text).map_err(|reason| GraftError::BadDataset {
        path: origin.into(),
        reason,
    })
}

/// A top-level `key: value` line and the lines under it: indented ones, and `- item` ones
/// (YAML lets a list under a key start at the key's own column).
struct Entry<'a> {
    key: &'a str,
    line: usize,
    value: &'a str,
    block: Vec<(usize, &'a str)>,
}

/// A value of a key Graft reads, with the line of each item for errors.
enum Value {
    Empty,
    Scalar(String),
    List(Vec<(usize, String)>),
    /// `id: name` lines.
    Map(Vec<(usize, String, String)>),
}

fn data_config(text: &str) -> Result<DataConfig, String> {
    let entries = entries(text)?;
    let find = |key: &str| entries.iter().find(|e| e.key == key);

    let path = match find("path") {
        None => None,
        Some(entry) => match value(entry)? {
            Value::Empty => None,
            Value::Scalar(path) => Some(path),
            _ => return Err(format!("line {}: 'path' should be one folder", entry.line)),
        },
    };
    let folders = |split: Split| -> Result<Vec<String>, String> {
        let key = split.key();
        let Some(entry) = find(key) else {
            return match split {
                Split::Test => Ok(Vec::new()),
                _ => Err(format!(
                    "no '{key}:' naming the folder of {key} images (e.g. `{key}: images/{key}`)"
                )),
            };
        };
        match value(entry)? {
            Value::Empty if split == Split::Test => Ok(Vec::new()),
            Value::Empty => Err(format!("line {}: '{key}' names no folder", entry.line)),
            Value::Scalar(folder) => Ok(vec![folder]),
            Value::List(folders) if !folders.is_empty() => {
                Ok(folders.into_iter().map(|(_, folder)| folder).collect())
            }
            _ => Err(format!(
                "line {}: '{key}' should be a folder or a list of folders",
                entry.line
            )),
        }
    };
    let (train, val, test) = (
        folders(Split::Train)?,
        folders(Split::Val)?,
        folders(Split::Test)?,
    );

    let nc = match find("nc") {
        None => None,
        Some(entry) => {
            let count = match value(entry)? {
                Value::Scalar(count) => count.parse::<usize>().ok(),
                _ => None,
            };
            let count = count.ok_or_else(|| {
                format!("line {}: 'nc' should be the number of classes", entry.line)
            })?;
            Some((entry.line, count))
        }
    };
    let names = match (find("names"), nc) {
        (Some(entry), _) => class_names(entry)?,
        // As Ultralytics: `nc` alone numbers the classes.
        (None, Some((_, count))) => (0..count).map(|i| format!("class_{i}")).collect(),
        (None, None) => return Err("no 'names:' listing the classes".into()),
    };
    if names.is_empty() {
        return Err("'names' lists no classes".into());
    }
    if let Some((line, count)) = nc
        && count != names.len()
    {
        return Err(format!(
            "line {line}: nc is {count}, but names lists {} classes",
            names.len()
        ));
    }
    Ok(DataConfig {
        path,
        train,
        val,
        test,
        names,
    })
}

fn class_names(entry: &Entry) -> Result<Vec<String>, String> {
    let named = |line: usize, name: String| {
        if name.is_empty() {
            Err(format!("line {line}: a class has an empty name"))
        } else {
            Ok(name)
        }
    };
    match value(entry)? {
        Value::List(names) => names
            .into_iter()
            .map(|(line, name)| named(line, name))
            .collect(),
        Value::Map(pairs) => {
            let mut numbered: Vec<(usize, usize, String)> = Vec::with_capacity(pairs.len());
            for (line, id, name) in pairs {
                let id = id.parse::<usize>().map_err(|_| {
                    format!("line {line}: class id '{id}' is not a whole number from 0")
                })?;
                if let Some((_, first, _)) = numbered.iter().find(|(other, _, _)| *other == id) {
                    return Err(format!(
                        "line {line}: class {id} is named twice (first on line {first})"
                    ));
                }
                numbered.push((id, line, named(line, name)?));
            }
            numbered.sort_by_key(|(id, _, _)| *id);
            let count = numbered.len();
            for (expected, (id, line, _)) in numbered.iter().enumerate() {
                if *id != expected {
                    return Err(format!(
                        "line {line}: names should number the classes 0 to {} without gaps, \
                         but class {expected} is missing",
                        count - 1
                    ));
                }
            }
            Ok(numbered.into_iter().map(|(_, _, name)| name).collect())
        }
        Value::Empty => Err(format!("line {}: 'names' lists no classes", entry.line)),
        Value::Scalar(_) => Err(format!(
            "line {}: 'names' should be a list (`- name` lines or `[a, b]`) or `id: name` lines",
            entry.line
        )),
    }
}

/// Splits the text into top-level entries, skipping blank and comment lines.
fn entries(text: &str) -> Result<Vec<Entry<'_>>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries: Vec<Entry> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let content = content.trim_end();
        let indented = content.len() < raw.trim_end().len();
        if indented || is_list_item(content) {
            match entries.last_mut() {
                Some(entry) => entry.block.push((line, content)),
                None => return Err(format!("line {line}: an indented line before any key")),
            }
            continue;
        }
        if entries.is_empty() && content == "---" {
            continue;
        }
        let Some((key, value)) = split_key(content) else {
            return Err(format!(
                "line {line}: cannot read '{content}'; data.yaml should hold `key: value` lines"
            ));
        };
        if let Some(first) = entries.iter().find(|e| e.key == key) {
            return Err(format!(
                "line {line}: '{key}' is given twice (first on line {})",
                first.line
            ));
        }
        entries.push(Entry {
            key,
            line,
            value,
            block: Vec::new(),
        });
    }
    Ok(entries)
}

fn is_list_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// `key: value` split at the first colon followed by a space or the end of the line.
fn split_key(content: &str) -> Option<(&str, &str)> {
    let colon = content
        .char_indices()
        .find(|&(i, c)| {
            c == ':'
                && content[i + 1..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map(|(i, _)| i)?;
    let key = content[..colon].trim_end();
    let key = ['"', '\'']
        .iter()
        .find_map(|&q| key.strip_prefix(q).and_then(|k| k.strip_suffix(q)))
        .unwrap_or(key);
    (!key.is_empty()).then_some((key, &content[colon + 1..]))
}

fn value(entry: &Entry) -> Result<Value, String> {
    let at = |line: usize, reason: String| format!("line {line}: {reason}");
    let text = entry.value.trim();
    let inline = if text.starts_with('[') {
        let items = flow_list(text).map_err(|reason| at(entry.line, reason))?;
        Some(Value::List(
            items.into_iter().map(|item| (entry.line, item)).collect(),
        ))
    } else {
        scalar(text)
            .map_err(|reason| at(entry.line, reason))?
            .map(Value::Scalar)
    };
    let Some(&(first_line, first)) = entry.block.first() else {
        return Ok(inline.unwrap_or(Value::Empty));
    };
    if inline.is_some() {
        return Err(at(
            first_line,
            format!("unexpected line under '{}'", entry.key),
        ));
    }
    if is_list_item(first) {
        let mut items = Vec::with_capacity(entry.block.len());
        for &(line, content) in &entry.block {
            let item = content
                .strip_prefix('-')
                .filter(|_| is_list_item(content))
                .ok_or_else(|| {
                    at(
                        line,
                        format!("expected a `- item` line under '{}'", entry.key),
                    )
                })?;
            let item = scalar(item)
                .map_err(|reason| at(line, reason))?
                .ok_or_else(|| at(line, "an empty list item".into()))?;
            items.push((line, item));
        }
        return Ok(Value::List(items));
    }
    let mut pairs = Vec::with_capacity(entry.block.len());
    for &(line, content) in &entry.block {
        let (key, value) = split_key(content).ok_or_else(|| {
            at(
                line,
                format!(
                    "cannot read '{content}' under '{}'; expected `- item` or `id: name` lines",
                    entry.key
                ),
            )
        })?;
        let value = scalar(value)
            .map_err(|reason| at(line, reason))?
            .unwrap_or_default();
        pairs.push((line, key.to_string(), value));
    }
    Ok(Value::Map(pairs))
}

/// The scalar at the start of `text` up to a comment; `None` when there is none.
fn scalar(text: &str) -> Result<Option<String>, String> {
    let text = text.trim_start();
    let Some(first) = text.chars().next() else {
        return Ok(None);
    };
    match first {
        '#' => Ok(None),
        '\'' | '"' => {
            let (value, rest) = quoted(text)?;
            let rest = rest.trim_start();
            if rest.is_empty() || rest.starts_with('#') {
                Ok(Some(value))
            } else {
                Err(format!("unexpected '{rest}' after a quoted value"))
            }
        }
        _ => {
            refuse_indicator(first)?;
            let value = text[..comment_start(text).unwrap_or(text.len())].trim_end();
            if value.contains(": ") {
                return Err(format!(
                    "cannot read '{value}'; quote it if it is one value"
                ));
            }
            Ok(Some(value.to_string()))
        }
    }
}

/// YAML syntax Graft does not read, at the start of a plain value.
fn refuse_indicator(first: char) -> Result<(), String> {
    match first {
        '[' | '{' => Err(
            "nested lists and `{...}` mappings are not supported; write `- item` lines or \
             `[a, b]`"
                .into(),
        ),
        '|' | '>' => Err("multi-line (`|` or `>`) values are not supported here".into()),
        '&' | '*' | '!' => Err("YAML anchors, aliases and tags are not supported".into()),
        _ => Ok(()),
    }
}

/// Where a `#` comment starts in plain text: at the start or after whitespace.
fn comment_start(text: &str) -> Option<usize> {
    text.char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || text[..i].ends_with([' ', '\t'])))
        .map(|(i, _)| i)
}

/// A quoted scalar at the start of `text` and the text after it: 'single' (`''` for a quote)
/// or "double" (with the escapes `\\ \" \/ \n \t \r`).
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let Some((_, quote)) = chars.next() else {
        return Err("a missing value".into());
    };
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if quote == '\'' => {
                if text[i + 1..].starts_with('\'') {
                    chars.next();
                    value.push('\'');
                } else {
                    return Ok((value, &text[i + 1..]));
                }
            }
            '"' if quote == '"' => return Ok((value, &text[i + 1..])),
            '\\' if quote == '"' => {
                let escaped = match chars.next().map(|(_, e)| e) {
                    Some('\\') => '\\',
                    Some('"') => '"',
                    Some('/') => '/',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    other => {
                        return Err(format!(
                            "unsupported escape '\\{}' in a double-quoted value; single quotes \
                             take backslashes as they are",
                            other.map(String::from).unwrap_or_default()
                        ));
                    }
                };
                value.push(escaped);
            }
            _ => value.push(c),
        }
    }
    Err(format!(
        "{quote}{value}: the quote is not closed on this line"
    ))
}

/// `[a, 'b c', "d"]`, on one line.
fn flow_list(text: &str) -> Result<Vec<String>, String> {
    let not_closed = || "a `[` list should close on its line; write long lists as `- item` lines";
    let mut rest = &text[1..];
    let mut items = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(']') {
            let after = after.trim_start();
            return if after.is_empty() || after.starts_with('#') {
                Ok(items)
            } else {
                Err(format!("unexpected '{after}' after a `[` list"))
            };
        }
        let Some(first) = rest.chars().next().filter(|&c| c != '#') else {
            return Err(not_closed().into());
        };
        let item = if first == '\'' || first == '"' {
            let (item, after) = quoted(rest)?;
            rest = after;
            item
        } else {
            refuse_indicator(first)?;
            let end = rest
                .find([',', ']'])
                .into_iter()
                .chain(comment_start(rest))
                .min()
                .unwrap_or(rest.len());
            let item = rest[..end].trim_end();
            rest = &rest[end..];
            if item.is_empty() {
                return Err("an empty item in a `[` list".into());
            }
            item.to_string()
        };
        items.push(item);
        rest = rest.trim_start();
        match rest.chars().next() {
            Some(',') => rest = &rest[1..],
            Some(']') => {}
            None | Some('#') => return Err(not_closed().into()),
            Some(_) => return Err(format!("expected ',' or ']' before '{rest}'")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Labels

/// The boxes of one label file: a line `class cx cy w h` per object, centre and size in
/// fractions of the image's width and height; blank lines are skipped. Edges within
/// [`EDGE_TOLERANCE`] outside the image are clipped to it. `file` names the file in errors,
/// `classes` is how many `names` lists.
pub fn parse_labels(text: &str, file: &str, classes: usize) -> Result<Vec<LabelledBox>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            labelled_box(line, classes).map_err(|reason| GraftError::BadDataset {
                path: file.into(),
                reason: format!("line {}: {reason}", index + 1),
            })
        })
        .collect()
}

fn labelled_box(line: &str, classes: usize) -> Result<LabelledBox, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{} values, but Graft reads boxes, 5 values `class cx cy w h` a line (a \
             segmentation polygon or keypoints have more)",
            fields.len()
        ));
    }
    let mut values = [0.0f64; 5];
    for (value, field) in values.iter_mut().zip(&fields) {
        *value = field
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("'{field}' is not a finite number"))?;
    }
    let [class, cx, cy, width, height] = values;
    if class < 0.0 || class.fract() != 0.0 {
        return Err(format!(
            "class '{}' is not a class number (a whole number from 0)",
            fields[0]
        ));
    }
    if class >= classes as f64 {
        return Err(format!(
            "class {class} is beyond names, which lists {classes} classes numbered from 0"
        ));
    }
    if width <= 0.0 || height <= 0.0 {
        return Err(format!(
            "the box has no area (width {width}, height {height})"
        ));
    }
    let bbox = checked_box(
        cx - width / 2.0,
        cy - height / 2.0,
        cx + width / 2.0,
        cy + height / 2.0,
    )
    .map_err(|reason| {
        format!(
            "{reason}; YOLO labels give centre and size in fractions of the image's width and \
             height, from 0 to 1"
        )
    })?;
    Ok(LabelledBox {
        class: class as usize,
        bbox,
    })
}

/// A box given by its corners in fractions of the image (from a label file, or drawn in the
/// browser): edges within [`EDGE_TOLERANCE`] outside the image are clipped to it, further out
/// is refused, and so is a box with nothing inside the image.
pub fn checked_box(x0: f64, y0: f64, x1: f64, y1: f64) -> Result<BoundingBox, String> {
    if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
        return Err("the box has a coordinate that is not a finite number".into());
    }
    if x1 <= x0 || y1 <= y0 {
        return Err(format!(
            "the box has no area (width {}, height {})",
            x1 - x0,
            y1 - y0
        ));
    }
    if x0 < -EDGE_TOLERANCE
        || y0 < -EDGE_TOLERANCE
        || x1 > 1.0 + EDGE_TOLERANCE
        || y1 > 1.0 + EDGE_TOLERANCE
    {
        return Err(format!(
            "the box reaches outside the image (x {x0:.4} to {x1:.4}, y {y0:.4} to {y1:.4})"
        ));
    }
    let clip = |v: f64| v.clamp(0.0, 1.0) as f32;
    let bbox = BoundingBox {
        x0: clip(x0),
        y0: clip(y0),
        x1: clip(x1),
        y1: clip(y1),
    };
    if bbox.area() <= 0.0 {
        return Err("the box lies on the image's edge, with nothing inside it".into());
    }
    Ok(bbox)
}

/// Where Ultralytics keeps an image's labels: the last `images` folder on its path becomes
/// `labels`, and the extension `.txt` (`d/images/train/a.jpg` → `d/labels/train/a.txt`). An
/// image with no `images` folder above it has its labels beside it.
pub fn label_path(image: &Path) -> PathBuf {
    let mut components: Vec<Component> = image.components().collect();
    let folders = components.len().saturating_sub(1);
    if let Some(i) = components[..folders]
        .iter()
        .rposition(|c| c.as_os_str() == "images")
    {
        components[i] = Component::Normal("labels".as_ref());
    }
    let mut labels: PathBuf = components.iter().collect();
    labels.set_extension("txt");
    labels
}

// ---------------------------------------------------------------------------------------------
// Files: on disk (the CLI) or a folder the browser was handed

/// What a path is in a [`DatasetFiles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    File,
    Folder,
}

/// Where a dataset's files are read from: the file system ([`FileSystem`]) or the listing of a
/// folder given to the browser ([`FolderListing`]). One [`load_split`] reads both.
pub trait DatasetFiles {
    /// What `path` is, or `None` when it does not exist.
    fn entry(&self, path: &Path) -> Option<PathKind>;
    /// The image files ([`IMAGE_EXTENSIONS`]) in `folder` and its sub-folders, hidden files
    /// and folders skipped, in any order.
    fn images_under(&self, folder: &Path) -> Result<Vec<PathBuf>>;
    /// A text file's contents, or `None` when it does not exist.
    fn read_text(&self, path: &Path) -> Result<Option<String>>;
}

/// The images of a split with their boxes, sorted by path; `yaml` is the `data.yaml` the
/// config came from (its folder anchors a relative `path`; a split folder `../x` that does not
/// exist is read as `x`, as Ultralytics does). Images are found in the split's folders and
/// their sub-folders by extension ([`IMAGE_EXTENSIONS`]); they are not decoded here.
pub fn load_split(
    files: &impl DatasetFiles,
    config: &DataConfig,
    yaml: &Path,
    split: Split,
) -> Result<Vec<LabelledImage>> {
    let key = split.key();
    let bad = |reason: String| GraftError::BadDataset {
        path: yaml.to_path_buf(),
        reason,
    };
    let folders = config.folders(split);
    if folders.is_empty() {
        return Err(bad(format!("there is no '{key}' split")));
    }
    let root = config.root(yaml.parent().unwrap_or(Path::new("")));
    let mut images = Vec::new();
    for folder in folders {
        let dir = split_folder(files, &root, folder);
        match files.entry(&dir) {
            Some(PathKind::Folder) => images.extend(files.images_under(&dir)?),
            Some(PathKind::File) => {
                return Err(bad(format!(
                    "split '{key}': {} is a file; Graft reads a folder of images (lists of \
                     image paths in a text file are not supported)",
                    dir.display()
                )));
            }
            None => {
                return Err(bad(format!(
                    "split '{key}': the folder {} does not exist",
                    dir.display()
                )));
            }
        }
    }
    images.sort();
    images.dedup();
    if images.is_empty() {
        let dirs: Vec<String> = folders
            .iter()
            .map(|f| split_folder(files, &root, f).display().to_string())
            .collect();
        return Err(bad(format!(
            "split '{key}': no images ({}) in {}",
            IMAGE_EXTENSIONS.join(", "),
            dirs.join(", ")
        )));
    }
    let classes = config.names.len();
    images
        .into_iter()
        .map(|image| {
            let file = label_path(&image);
            let boxes = match files.read_text(&file)? {
                Some(text) => parse_labels(&text, &file.display().to_string(), classes)?,
                None => Vec::new(), // no label file: no objects
            };
            Ok(LabelledImage { image, boxes })
        })
        .collect()
}

/// A split's folder under the root. As Ultralytics does, a `../x` that does not exist is read as
/// `x`: Roboflow's exports write `train: ../train/images` for a `train/` beside `data.yaml`.
fn split_folder(files: &impl DatasetFiles, root: &Path, folder: &str) -> PathBuf {
    let written = root.join(folder);
    match folder.strip_prefix("../") {
        Some(inside)
            if files.entry(&written).is_none() && files.entry(&root.join(inside)).is_some() =>
        {
            root.join(inside)
        }
        _ => written,
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// The dataset on disk. Symbolic links to folders are not followed.
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSystem;

#[cfg(not(target_arch = "wasm32"))]
impl DatasetFiles for FileSystem {
    fn entry(&self, path: &Path) -> Option<PathKind> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(if metadata.is_dir() {
            PathKind::Folder
        } else {
            PathKind::File
        })
    }

    fn images_under(&self, folder: &Path) -> Result<Vec<PathBuf>> {
        let mut images = Vec::new();
        for entry in std::fs::read_dir(folder).map_err(|e| GraftError::io(folder, e))? {
            let entry = entry.map_err(|e| GraftError::io(folder, e))?;
            if is_hidden(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| GraftError::io(&path, e))?;
            if file_type.is_dir() {
                images.extend(self.images_under(&path)?);
            } else if is_image(&path) && path.is_file() {
                images.push(path);
            }
        }
        Ok(images)
    }

    fn read_text(&self, path: &Path) -> Result<Option<String>> {
        if let Ok(metadata) = std::fs::metadata(path) {
            check_text_size(path, metadata.len())?;
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(GraftError::io(path, e)),
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| GraftError::BadDataset {
                path: path.to_path_buf(),
                reason: "not a text file (UTF-8)".into(),
            })
    }
}

/// Reads and parses a `data.yaml`.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_data_yaml(yaml: &Path) -> Result<DataConfig> {
    let not_found = || GraftError::io(yaml, std::io::ErrorKind::NotFound.into());
    let text = FileSystem.read_text(yaml)?.ok_or_else(not_found)?;
    parse_data_yaml(&text, &yaml.display().to_string())
}

/// A folder as the browser hands it over: every file's path relative to the folder's parent
/// (`set/images/train/a.jpg`, as `webkitRelativePath` gives it) and the text of those it read
/// (the `.yaml` and `.txt` files). Paths are taken lexically: `..` and `.` are resolved.
#[derive(Debug, Default)]
pub struct FolderListing {
    files: std::collections::BTreeMap<PathBuf, Option<String>>,
}

/// `path` with `.` dropped and `..` taking off the component before it (or kept at the start).
fn lexical(path: &Path) -> PathBuf {
    let mut parts: Vec<Component> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

impl FolderListing {
    /// Adds a file; `text` is its contents when it was read.
    pub fn add(&mut self, path: &str, text: Option<String>) {
        self.files.insert(lexical(Path::new(path)), text);
    }

    /// The folder's `data.yaml`: the shallowest file named so, else the shallowest `.yaml` or
    /// `.yml` file, with its text.
    pub fn data_yaml(&self) -> Result<(PathBuf, &str)> {
        let is_yaml = |p: &Path| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        };
        let depth = |p: &Path| p.components().count();
        let found = self
            .files
            .iter()
            .filter(|(path, _)| is_yaml(path))
            .min_by_key(|(path, _)| (path.file_name() != Some("data.yaml".as_ref()), depth(path)));
        match found {
            Some((path, Some(text))) => {
                check_text_size(path, text.len() as u64)?;
                Ok((path.clone(), text))
            }
            Some((path, None)) => Err(GraftError::BadDataset {
                path: path.clone(),
                reason: "its text was not read".into(),
            }),
            None => Err(GraftError::BadDataset {
                path: PathBuf::from("the folder"),
                reason: "it has no data.yaml (a YOLO dataset names its classes and splits in one)"
                    .into(),
            }),
        }
    }
}

/// A YOLO dataset read from a [`FolderListing`].
#[derive(Debug)]
pub struct ListedDataset {
    pub yaml: PathBuf,
    pub names: Vec<String>,
    pub train: Vec<LabelledImage>,
    pub val: Vec<LabelledImage>,
}

impl FolderListing {
    /// The dataset in the folder: its `data.yaml`, and the train and val splits it names.
    /// The folder handed over is the dataset, so a `path` leading outside it (often an absolute
    /// path on the machine that wrote the file) is read as the `data.yaml`'s own folder.
    pub fn read_dataset(&self) -> Result<ListedDataset> {
        let (yaml, text) = self.data_yaml()?;
        let mut config = parse_data_yaml(text, &yaml.display().to_string())?;
        let yaml_dir = yaml.parent().unwrap_or(Path::new(""));
        if self.entry(&config.root(yaml_dir)) != Some(PathKind::Folder) {
            config.path = None;
        }
        let train = load_split(self, &config, &yaml, Split::Train)?;
        let val = load_split(self, &config, &yaml, Split::Val)?;
        Ok(ListedDataset {
            names: config.names,
            yaml,
            train,
            val,
        })
    }
}

impl DatasetFiles for FolderListing {
    fn entry(&self, path: &Path) -> Option<PathKind> {
        let path = lexical(path);
        if self.files.contains_key(&path) {
            return Some(PathKind::File);
        }
        let below = self.files.range(path.clone()..).next();
        below
            .filter(|(file, _)| file.starts_with(&path))
            .map(|_| PathKind::Folder)
    }

    fn images_under(&self, folder: &Path) -> Result<Vec<PathBuf>> {
        let folder = lexical(folder);
        Ok(self
            .files
            .range(folder.clone()..)
            .map(|(path, _)| path)
            .take_while(|path| path.starts_with(&folder))
            .filter(|path| {
                is_image(path)
                    && !path
                        .strip_prefix(&folder)
                        .is_ok_and(|inside| inside.iter().any(is_hidden))
            })
            .cloned()
            .collect())
    }

    fn read_text(&self, path: &Path) -> Result<Option<String>> {
        match self.files.get(&lexical(path)) {
            None => Ok(None),
            Some(Some(text)) => {
                check_text_size(path, text.len() as u64)?;
                Ok(Some(text.clone()))
            }
            Some(None) => Err(GraftError::BadDataset {
                path: path.to_path_buf(),
                reason: "its text was not read".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DataConfig> {
        parse_data_yaml(text, "my/data.yaml")
    }

    /// The error's message, which must name the file.
    fn error(text: &str) -> String {
        let message = parse(text).unwrap_err().to_string();
        assert!(message.contains("my/data.yaml"), "{message}");
        message
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_the_ultralytics_layout_with_a_block_list() {
        let config = parse(
            "# COCO8 dataset\n\
             path: ../datasets/coco8 # dataset root dir\n\
             train: images/train # train images (relative to 'path')\n\
             val: images/val\n\
             test: # test images (optional)\n\
             \n\
             names:\n\
             \x20 - person\n\
             \x20 - 'traffic light'   # quoted, with a space\n\
             \x20 - \"fire hydrant\"\n",
        )
        .unwrap();
        assert_eq!(
            config,
            DataConfig {
                path: Some("../datasets/coco8".into()),
                train: strings(&["images/train"]),
                val: strings(&["images/val"]),
                test: Vec::new(),
                names: strings(&["person", "traffic light", "fire hydrant"]),
            }
        );
    }

    #[test]
    fn reads_a_flow_list_and_lists_of_folders() {
        let config = parse(
            "train: [images/a, 'images/b']\n\
             val:\n\
             - images/val   # a list at the key's own column\n\
             - images/val2\n\
             test: images/test\n\
             names: ['cat', \"dog's bowl\", bird, 'it''s']\n\
             nc: 4\n",
        )
        .unwrap();
        assert_eq!(config.train, strings(&["images/a", "images/b"]));
        assert_eq!(config.val, strings(&["images/val", "images/val2"]));
        assert_eq!(config.folders(Split::Test), strings(&["images/test"]));
        assert_eq!(
            config.names,
            strings(&["cat", "dog's bowl", "bird", "it's"])
        );
        assert_eq!(config.path, None);
    }

    #[test]
    fn reads_names_as_a_map_in_any_order() {
        let config = parse(
            "train: images/train\nval: images/val\nnames:\n  1: traffic light\n  0: person\n  \
             2: \"stop sign\"\nnc: 3\n",
        )
        .unwrap();
        assert_eq!(
            config.names,
            strings(&["person", "traffic light", "stop sign"])
        );
    }

    #[test]
    fn map_ids_must_be_0_to_n_minus_1() {
        let head = "train: images/train\nval: images/val\nnames:\n";
        let gap = error(&format!("{head}  0: a\n  2: c\n"));
        assert!(
            gap.contains("line 5") && gap.contains("class 1 is missing"),
            "{gap}"
        );
        let twice = error(&format!("{head}  0: a\n  1: b\n  0: c\n"));
        assert!(
            twice.contains("line 6") && twice.contains("first on line 4"),
            "{twice}"
        );
        let word = error(&format!("{head}  zero: a\n"));
        assert!(word.contains("line 4") && word.contains("'zero'"), "{word}");
        let no_start = error(&format!("{head}  1: a\n  2: b\n"));
        assert!(no_start.contains("class 0 is missing"), "{no_start}");
    }

    #[test]
    fn nc_must_agree_with_names_and_alone_numbers_the_classes() {
        let message = error("train: t\nval: v\nnc: 3 # classes\nnames: [a, b]\n");
        assert!(
            message.contains("line 3") && message.contains("nc is 3, but names lists 2"),
            "{message}"
        );
        let message = error("train: t\nval: v\nnc: three\nnames: [a]\n");
        assert!(message.contains("line 3"), "{message}");
        let config = parse("train: t\nval: v\nnc: 2\n").unwrap();
        assert_eq!(config.names, strings(&["class_0", "class_1"]));
        assert!(error("train: t\nval: v\n").contains("no 'names:'"));
        assert!(error("train: t\nval: v\nnames: []\n").contains("lists no classes"));
    }

    #[test]
    fn other_keys_and_their_indented_blocks_are_skipped() {
        let config = parse(
            "---\n\
             path: /data/coco  # absolute\n\
             train: images/train\n\
             val: images/val\n\
             names: [a]\n\
             download: |\n\
             \x20 from ultralytics.utils import download   # 'unbalanced \"quotes\n\
             \x20 urls = [f\"{url}x.zip\",\n\
             \n\
             \x20         'y: z']\n\
             # a comment at column 0 in the middle\n\
             \x20 download(urls)\n\
             yolo_version: 8\n\
             flags: {a: 1}\n",
        )
        .unwrap();
        assert_eq!(config.path.as_deref(), Some("/data/coco"));
        assert_eq!(config.names, strings(&["a"]));
    }

    #[test]
    fn relative_and_absolute_paths_resolve_against_the_yaml_folder() {
        let yaml_dir = Path::new("/home/me/sets");
        let mut config = parse("path: ../coco\ntrain: t\nval: v\nnames: [a]\n").unwrap();
        assert_eq!(config.root(yaml_dir), Path::new("/home/me/sets/../coco"));
        config.path = Some("/data/coco".into());
        assert_eq!(config.root(yaml_dir), Path::new("/data/coco"));
        config.path = None;
        assert_eq!(config.root(yaml_dir), yaml_dir);
        let empty = parse("path:\ntrain: t\nval: v\nnames: [a]\n").unwrap();
        assert_eq!(empty.path, None);
    }

    #[test]
    fn unreadable_yaml_is_refused_with_its_line() {
        let cases = [
            (
                "train: t\nval: v\nnames: [a, b\n",
                "line 3",
                "close on its line",
            ),
            (
                "train: t\nval: v\nnames: {0: a}\n",
                "line 3",
                "not supported",
            ),
            ("train: t\nval: v\nnames: &x [a]\n", "line 3", "anchors"),
            ("train: t\nval: v\nnames: |\n  a\n", "line 3", "multi-line"),
            ("train: t\nval: v\nnames:\n  - [a]\n", "line 4", "nested"),
            (
                "train: t\nval: v\nnames:\n  - a\n  b\n",
                "line 5",
                "`- item`",
            ),
            (
                "train: t\nval: v\nnames:\n  -\n",
                "line 4",
                "empty list item",
            ),
            ("train: t\nval: v\nnames: 'a\n", "line 3", "not closed"),
            ("train: t\nval: v\nnames: [a,, b]\n", "line 3", "empty item"),
            (
                "train: t\nval: v\nnames: [a] b\n",
                "line 3",
                "after a `[` list",
            ),
            ("  train: t\n", "line 1", "indented line before any key"),
            (
                "train: t\nval: v\njust words\n",
                "line 3",
                "cannot read 'just words'",
            ),
            (
                "train: t\ntrain: u\n",
                "line 2",
                "given twice (first on line 1)",
            ),
            ("train: a: b\nval: v\n", "line 1", "quote it"),
            (
                "train: t\n  more\nval: v\n",
                "line 2",
                "unexpected line under 'train'",
            ),
            ("train: \"a\\qb\"\n", "line 1", "unsupported escape"),
            ("train: t\nval: v\nnames:\n  - ''\n", "line 4", "empty name"),
            ("train:\nval: v\nnames: [a]\n", "line 1", "names no folder"),
            (
                "train: t\nval: v\npath: [a, b]\nnames: [a]\n",
                "line 3",
                "one folder",
            ),
            ("train: t\nval: v\nnames: a\n", "line 3", "should be a list"),
        ];
        for (text, line, reason) in cases {
            let message = error(text);
            assert!(
                message.contains(line) && message.contains(reason),
                "{text:?}: {message}"
            );
        }
        assert!(error("val: v\nnames: [a]\n").contains("no 'train:'"));
        assert!(error("train: t\nnames: [a]\n").contains("no 'val:'"));
    }

    fn labels(text: &str) -> Result<Vec<LabelledBox>> {
        parse_labels(text, "labels/train/x.txt", 3)
    }

    #[test]
    fn labels_become_corner_boxes() {
        let boxes = labels("0 0.5 0.5 0.5 0.25\n\n2 0.25 0.75 0.5 0.5\r\n  \n").unwrap();
        assert_eq!(
            boxes,
            vec![
                LabelledBox {
                    class: 0,
                    bbox: BoundingBox {
                        x0: 0.25,
                        y0: 0.375,
                        x1: 0.75,
                        y1: 0.625
                    }
                },
                LabelledBox {
                    class: 2,
                    bbox: BoundingBox {
                        x0: 0.0,
                        y0: 0.5,
                        x1: 0.5,
                        y1: 1.0
                    }
                },
            ]
        );
        assert!(labels("").unwrap().is_empty());
        assert!(labels("\n \n").unwrap().is_empty());
        // A class id written as a float, as some exporters do.
        assert_eq!(labels("1.0 0.5 0.5 0.2 0.2").unwrap()[0].class, 1);
    }

    #[test]
    fn edges_within_the_tolerance_are_clipped() {
        // x from -0.0005 to 1.0005, both within the tolerance: clipped to [0, 1].
        let boxes = labels("1 0.5 0.5 1.001 0.998\n0 0.0004 0.5 0.0016 0.5\n").unwrap();
        assert_eq!(
            boxes[0].bbox,
            BoundingBox {
                x0: 0.0,
                y0: 0.001,
                x1: 1.0,
                y1: 0.999
            }
        );
        // x from -0.0004 to 0.0012: clipped to [0, 0.0012].
        assert_eq!(boxes[1].bbox.x0, 0.0);
        assert_eq!(boxes[1].bbox.x1, 0.0012);
    }

    #[test]
    fn every_label_error_names_the_file_and_the_line() {
        let cases = [
            ("0 0.5 0.5 0.1", "line 1", "4 values"),
            (
                "0 0.5 0.5 0.1 0.1\n\n1 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2",
                "line 3",
                "segmentation polygon",
            ),
            (
                "0 0.5 abc 0.1 0.1",
                "line 1",
                "'abc' is not a finite number",
            ),
            (
                "0 0.5 0.5 nan 0.1",
                "line 1",
                "'nan' is not a finite number",
            ),
            (
                "0 0.5 0.5 0.1 inf",
                "line 1",
                "'inf' is not a finite number",
            ),
            (
                "1.5 0.5 0.5 0.1 0.1",
                "line 1",
                "'1.5' is not a class number",
            ),
            ("-1 0.5 0.5 0.1 0.1", "line 1", "'-1' is not a class number"),
            (
                "0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1",
                "line 2",
                "lists 3 classes",
            ),
            ("0 0.5 0.5 0 0.1", "line 1", "no area"),
            ("0 0.5 0.5 0.1 -0.1", "line 1", "no area"),
            ("0 0.5 0.5 1.1 0.1", "line 1", "outside the image"),
            ("0 0.05 0.5 0.2 0.1", "line 1", "outside the image"),
            ("0 0.5 0.999 0.1 0.006", "line 1", "outside the image"),
            ("0 320 240 64 48", "line 1", "fractions of the image"),
            ("0 1.0005 0.5 0.0008 0.1", "line 1", "on the image's edge"),
        ];
        for (text, line, reason) in cases {
            let error = labels(text).unwrap_err();
            assert_eq!(error.code(), "BAD_DATASET");
            let message = error.to_string();
            assert!(
                message.contains("labels/train/x.txt")
                    && message.contains(line)
                    && message.contains(reason),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn label_files_mirror_the_images_folder() {
        assert_eq!(
            label_path(Path::new("/d/images/train/a.b.JPG")),
            Path::new("/d/labels/train/a.b.txt")
        );
        // Only the last `images` folder is replaced, and never the file's own name.
        assert_eq!(
            label_path(Path::new("images/x/images/val/images")),
            Path::new("images/x/labels/val/images.txt")
        );
        assert_eq!(
            label_path(Path::new("/d/photos/a.jpg")),
            Path::new("/d/photos/a.txt")
        );
    }

    fn write(path: &Path, contents: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    #[test]
    fn load_split_lists_images_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        let yaml = dir.path().join("data.yaml");
        write(
            &yaml,
            "path: set\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n",
        );
        write(&root.join("images/train/b.JPG"), "x");
        write(&root.join("labels/train/b.txt"), "1 0.5 0.5 0.5 0.5\n");
        write(&root.join("images/train/a.png"), "x");
        write(&root.join("labels/train/a.txt"), "");
        // No label file: no objects.
        write(&root.join("images/train/sub/c.webp"), "x");
        write(&root.join("images/train/notes.txt"), "not an image");
        write(&root.join("images/train/.hidden.jpg"), "x");
        std::fs::create_dir_all(root.join("images/val")).unwrap();

        let config = read_data_yaml(&yaml).unwrap();
        let train = load_split(&FileSystem, &config, &yaml, Split::Train).unwrap();
        let listed: Vec<(PathBuf, usize)> = train
            .iter()
            .map(|i| {
                (
                    i.image.strip_prefix(&root).unwrap().to_path_buf(),
                    i.boxes.len(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            vec![
                (PathBuf::from("images/train/a.png"), 0),
                (PathBuf::from("images/train/b.JPG"), 1),
                (PathBuf::from("images/train/sub/c.webp"), 0),
            ]
        );
        assert_eq!(train[1].boxes[0].class, 1);

        let empty = load_split(&FileSystem, &config, &yaml, Split::Val)
            .unwrap_err()
            .to_string();
        assert!(
            empty.contains("data.yaml")
                && empty.contains("split 'val'")
                && empty.contains("no images")
                && empty.contains("images/val"),
            "{empty}"
        );
        let no_test = load_split(&FileSystem, &config, &yaml, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(no_test.contains("no 'test' split"), "{no_test}");
    }

    #[test]
    fn load_split_reads_roboflow_exports() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("data.yaml");
        write(
            &yaml,
            "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['a']\n",
        );
        write(&dir.path().join("train/images/x.jpg"), "x");
        write(
            &dir.path().join("train/labels/x.txt"),
            "0 0.5 0.5 0.2 0.2\n",
        );
        let config = read_data_yaml(&yaml).unwrap();
        let train = load_split(&FileSystem, &config, &yaml, Split::Train).unwrap();
        assert_eq!(train.len(), 1);
        assert_eq!(train[0].boxes.len(), 1);
        let missing = load_split(&FileSystem, &config, &yaml, Split::Val)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("../valid/images"), "{missing}");
    }

    #[test]
    fn load_split_names_a_missing_folder_and_a_bad_label_file() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("data.yaml");
        let config = parse_data_yaml(
            "train: images/train\nval: [images/val, images/gone]\nnames: [a]\n",
            "data.yaml",
        )
        .unwrap();
        write(&dir.path().join("images/val/x.jpg"), "x");
        let missing = load_split(&FileSystem, &config, &yaml, Split::Val)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("split 'val'")
                && missing.contains("images/gone")
                && missing.contains("does not exist"),
            "{missing}"
        );
        write(&dir.path().join("images/train/y.jpg"), "x");
        write(
            &dir.path().join("labels/train/y.txt"),
            "0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n",
        );
        let bad = load_split(&FileSystem, &config, &yaml, Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("labels/train/y.txt") && bad.contains("line 2: class 1"),
            "{bad}"
        );
    }

    fn listing(files: &[(&str, Option<&str>)]) -> FolderListing {
        let mut listing = FolderListing::default();
        for (path, text) in files {
            listing.add(path, text.map(str::to_string));
        }
        listing
    }

    /// The browser's folder: the shallowest data.yaml, a `path` from another machine read as
    /// the folder itself, `..` resolved, hidden folders and other files skipped, labels found
    /// beside the images' folder.
    #[test]
    fn a_listed_folder_reads_as_a_dataset() {
        let files = listing(&[
            (
                "set/data.yaml",
                Some(
                    "path: /home/me/set\ntrain: images/train\nval: ../set/images/val\nnames:\n  1: dog\n  0: cat\n",
                ),
            ),
            ("set/other/extra.yaml", Some("not: read")),
            ("set/images/train/b.jpg", None),
            ("set/labels/train/b.txt", Some("1 0.5 0.5 0.5 0.5\n")),
            ("set/images/train/a.PNG", None),
            ("set/images/train/.hidden/c.jpg", None),
            ("set/images/train/notes.txt", Some("")),
            ("set/images/val/v.jpg", None),
            ("set/labels/val/v.txt", Some("0 0.25 0.25 0.1 0.1\n")),
        ]);
        let dataset = files.read_dataset().unwrap();
        assert_eq!(dataset.yaml, Path::new("set/data.yaml"));
        assert_eq!(dataset.names, strings(&["cat", "dog"]));
        let listed = |images: &[LabelledImage]| -> Vec<(String, Vec<usize>)> {
            images
                .iter()
                .map(|i| {
                    let classes = i.boxes.iter().map(|b| b.class).collect();
                    (i.image.display().to_string(), classes)
                })
                .collect()
        };
        assert_eq!(
            listed(&dataset.train),
            vec![
                ("set/images/train/a.PNG".to_string(), vec![]),
                ("set/images/train/b.jpg".to_string(), vec![1]),
            ]
        );
        assert_eq!(
            listed(&dataset.val),
            vec![("set/images/val/v.jpg".to_string(), vec![0])]
        );
    }

    #[test]
    fn a_listed_folder_names_its_faults() {
        let no_yaml = listing(&[("set/images/train/a.jpg", None)])
            .read_dataset()
            .unwrap_err()
            .to_string();
        assert!(no_yaml.contains("no data.yaml"), "{no_yaml}");
        let bad_line = listing(&[
            (
                "d/data.yaml",
                Some("train: images/train\nval: images/train\nnames: [a]\n"),
            ),
            ("d/images/train/x.jpg", None),
            (
                "d/labels/train/x.txt",
                Some("0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n"),
            ),
        ])
        .read_dataset()
        .unwrap_err()
        .to_string();
        assert!(
            bad_line.contains("d/labels/train/x.txt") && bad_line.contains("line 2"),
            "{bad_line}"
        );
        let unread = listing(&[
            (
                "d/data.yaml",
                Some("train: images/train\nval: images/train\nnames: [a]\n"),
            ),
            ("d/images/train/x.jpg", None),
            ("d/labels/train/x.txt", None),
        ])
        .read_dataset()
        .unwrap_err()
        .to_string();
        assert!(
            unread.contains("x.txt") && unread.contains("not read"),
            "{unread}"
        );
        let empty = listing(&[
            (
                "d/data.yaml",
                Some("train: images/train\nval: images/train\nnames: [a]\n"),
            ),
            ("d/images/train/readme.md", None),
        ])
        .read_dataset()
        .unwrap_err()
        .to_string();
        assert!(empty.contains("split 'train': no images"), "{empty}");
        let huge = "0 0.5 0.5 0.1 0.1\n".repeat(70_000);
        let too_large = listing(&[
            (
                "d/data.yaml",
                Some("train: images/train\nval: images/train\nnames: [a]\n"),
            ),
            ("d/images/train/x.jpg", None),
            ("d/labels/train/x.txt", Some(huge.as_str())),
        ])
        .read_dataset()
        .unwrap_err();
        assert_eq!(too_large.code(), "TOO_LARGE");
        let message = too_large.to_string();
        assert!(
            message.contains("d/labels/train/x.txt") && message.contains("1048576"),
            "{message}"
        );
    }
}
