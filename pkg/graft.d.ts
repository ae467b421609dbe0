/** Anything Graft accepts as an image. */
export type GraftImage =
  | File
  | Blob
  | ImageBitmap
  | ImageData
  | HTMLImageElement
  | HTMLCanvasElement
  | OffscreenCanvas
  | HTMLVideoElement;

/**
 * What kind of failure an error is; match on it, never on the message (which is for people).
 * - `INVALID_ARGUMENT`: a wrong argument to a method (type, count).
 * - `INVALID_OPTION`: a training option or value out of range; the message names it.
 * - `BAD_IMAGE`: an image that cannot be used (undecodable, empty, too large).
 * - `BAD_FILE`: a weights or model file that is not what it should be.
 * - `WRONG_BACKBONE`: a model built on another backbone.
 * - `NOT_FOUND`: no such class or example.
 * - `ALREADY_EXISTS`: a class name, example id or image (same content) already present.
 * - `NO_MODEL`: predicting or exporting before training or loading a model.
 * - `TOO_LARGE`: more images (for this many classes) than training fits in memory; the
 *   message gives the most it takes. Nothing of the call was added.
 * - `DEVICE_UNAVAILABLE`, `DEVICE_FAILED`: WebGPU (or the CPU backend) could not run.
 * - `ABORTED`: the AbortSignal fired before the call started, or stopped `embed` (an aborted
 *   `train` resolves with its best model; an aborted `addExamples` skips what it had not added).
 * - `DISPOSED`: the instance was disposed.
 * - `ENGINE_CRASHED`: the engine hit a bug and stopped; create a new instance.
 * - `IO_ERROR`, `BAD_DATASET`, `NO_ENGINE`, `INTERNAL`: rarer failures.
 */
export type GraftErrorCode =
  | 'INVALID_ARGUMENT'
  | 'INVALID_OPTION'
  | 'BAD_IMAGE'
  | 'BAD_FILE'
  | 'WRONG_BACKBONE'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'NO_MODEL'
  | 'TOO_LARGE'
  | 'DEVICE_UNAVAILABLE'
  | 'DEVICE_FAILED'
  | 'ABORTED'
  | 'DISPOSED'
  | 'ENGINE_CRASHED'
  | 'IO_ERROR'
  | 'BAD_DATASET'
  | 'NO_ENGINE'
  | 'INTERNAL';

/** Every error Graft throws. */
export declare class GraftError extends Error {
  readonly name: 'GraftError';
  readonly code: GraftErrorCode;
  /** With `addExamples` when no image could be added: why each was skipped. */
  readonly skipped?: SkippedImage[];
}

/** One event type for every long operation, told apart by `status`. */
export type GraftProgress =
  | { status: 'initiate'; file: string; total: number; cached: boolean }
  | { status: 'progress'; file?: string; loaded?: number; total: number; done?: number }
  | { status: 'ready' };

export interface CreateOptions {
  /** URL of the backbone's safetensors on this site, or its bytes. */
  weights: string | ArrayBuffer | Uint8Array;
  /** `auto` (default) uses WebGPU when the browser gives an adapter, else the CPU. */
  backend?: 'auto' | 'webgpu' | 'cpu';
  /**
   * On the CPU backend, how many engines embed images, each in its own worker with its own
   * wasm memory: `navigator.hardwareConcurrency` by default (at most 8). 1 to 64.
   */
  workers?: number;
  onProgress?: (progress: GraftProgress) => void;
  /** Where `worker.js` is served, if a bundler moved it. */
  workerUrl?: string | URL;
  /**
   * Called once if the engine dies (a panic, a trap, the worker failing): every pending and
   * later call rejects with `ENGINE_CRASHED`. Create a new instance to go on; the examples
   * live in the dead one, so restore them (`addEmbeddings`, `loadModel`) from your storage.
   */
  onCrash?: (error: GraftError) => void;
  /**
   * `classify` (default) trains a classifier; `detect` an object detector (boxes): then
   * `addExamples` takes images with boxes, `train` trains the detector, and `detect` finds
   * objects.
   */
  task?: 'classify' | 'detect';
  /** A detector's square, letterboxed input side: a multiple of 32 from 128 to 1024 (default 320). */
  inputSize?: number;
}

export interface LoadOptions extends CreateOptions {
  /** A model file from `exportModel()` or `graft train`. */
  model: ArrayBuffer | Uint8Array;
}

/**
 * The training options: the CLI's flags, camelCased (`--fine-tune-blocks` is
 * `fineTuneBlocks`), with the same defaults and checks. Unknown names are refused.
 */
export interface TrainOptions {
  /** Fraction of each class held out for validation (default 0.2). */
  validationSplit?: number;
  /** Seeds the split, cross-validation folds, fine-tuning order and augmentation (default 42). */
  seed?: number;
  /** A hidden layer (ReLU) of this width in the head; default: a linear head. */
  hiddenUnits?: number;
  /** The head's L2 penalty; default: picked by 5-fold cross-validation. */
  l2?: number;
  /** Class-weighted loss in both phases: 'auto' (default) when the largest class is 1.5x the smallest. */
  balance?: 'auto' | 'on' | 'off';
  /** Phase 2: fine-tune the backbone's last K blocks (and head conv) with the head; 0 = off (default). A detector's last K blocks train with its head from the first step. */
  fineTuneBlocks?: number;
  /** Fine-tuning epochs (passes over the images); default: picked from their number. The head has no epochs. */
  epochs?: number;
  /** Fine-tuning batch size; default: picked from the number of images. */
  batchSize?: number;
  /** The head's learning rate while fine-tuning (default 3e-4). */
  learningRate?: number;
  /** The backbone's learning rate as a fraction of the head's (default 0.1). */
  backboneLrFactor?: number;
  /** Update BatchNorm statistics too (default: frozen, inference mode). */
  trainBatchNorm?: boolean;
  /** Fine-tuning's augmentation; every kind is off unless set to true (off measured better). */
  augment?: Partial<Record<'flip' | 'crop' | 'rotate' | 'brightness' | 'contrast', boolean>>;
  /** Cycle each image through N fixed augmentations whose frozen-backbone outputs are cached. */
  augmentVariants?: number;
  labelSmoothing?: number;
  /** Fine-tuning epochs without a better validation result (accuracy, then loss) before stopping (default 2; 0 = never). */
  patience?: number;
  /** Dropout on the pooled features while fine-tuning (default 0). */
  dropout?: number;
}

export interface TrainCallbacks {
  onProgress?: (event: TrainProgress) => void;
  /** Aborting stops at the next step; the best model so far is kept. */
  signal?: AbortSignal;
}

/** One fine-tuning epoch (epoch 0: the head alone, before any step: no training numbers). */
export interface EpochReport {
  epoch: number;
  loss: number | null;
  accuracy: number | null;
  valLoss: number | null;
  valAccuracy: number | null;
}

/** One L2 strength tried by cross-validation. */
export interface L2Trial {
  l2: number;
  cvLoss: number;
  cvAccuracy: number;
}

/** Phase 1: how the head was solved. */
export interface HeadReport {
  hiddenUnits: number | null;
  l2: number;
  l2Source: 'crossValidation' | 'given' | 'tooFewImages';
  folds: number;
  /** The regularisation path, strongest penalty first. */
  search: L2Trial[];
  iterations: number;
  converged: boolean;
  classWeights: number[] | null;
  trainLoss: number;
  trainAccuracy: number;
  valLoss: number | null;
  valAccuracy: number | null;
  seconds: number;
}

/** What `onProgress` receives while training, told apart by `status`. */
export type TrainProgress =
  | { status: 'note'; text: string }
  | ({ status: 'search'; index: number; of: number } & L2Trial)
  | ({ status: 'head' } & HeadReport)
  | ({ status: 'baseline' } & EpochReport)
  | { status: 'step'; epoch: number; epochs: number; step: number; totalSteps: number }
  | ({ status: 'epoch'; seconds: number } & EpochReport);

export interface FineTuneReport {
  /** The plan that ran, defaults included. */
  plan: Record<string, unknown>;
  /** What the plan does and what was picked, one line each. */
  notes: string[];
  /** The head alone on the validation images, before fine-tuning (epoch 0). */
  baseline: EpochReport | null;
  history: EpochReport[];
  /** 0 when no epoch beat the head alone: the model is then head-only. */
  bestEpoch: number;
  stoppedEarly: boolean;
  secondsPerEpoch: number[];
  cacheMegabytes: number;
}

/** A held-out image and what the kept model said of it. */
export interface ValidationExample {
  /** The example's id (as `addExamples` gave it). */
  id: string;
  /** Its class, as an index into `labels`. */
  label: number;
  predicted: number;
  /** The predicted class's probability. */
  score: number;
  /** One probability per label, in `labels` order; `null` past 100 classes (the report's size
   * would grow with images x classes). */
  probabilities: number[] | null;
}

export interface SkippedImage {
  index?: number;
  name: string;
  code?: GraftErrorCode;
  reason: string;
}

/** The same report as `graft train --json`. */
export interface TrainReport {
  labels: string[];
  trainImages: number;
  validationImages: number;
  skipped: SkippedImage[];
  /** Every choice made, one line each. */
  notes: string[];
  head: HeadReport;
  /** Phase 2, when `fineTuneBlocks` asked for it. */
  fineTune: FineTuneReport | null;
  /** The kept model on the held-out images (null without any). */
  validation: Omit<Evaluation, 'skipped'> | null;
  validationExamples: ValidationExample[];
  /** True when `signal` stopped training before it finished. */
  stopped: boolean;
  seconds: number;
}

export interface Prediction {
  label: string;
  score: number;
}

/** Where in an image the evidence for one class lies: gradient x activation on a feature map
 * (7x7, Grad-CAM on the last one; 14x14 with `fine`). */
export interface Explanation {
  /** The class explained: the predicted one unless `label` named another. */
  label: string;
  /** Its probability. */
  score: number;
  /** `rows x cols` values in [0, 1], row 0 at the top, row-major; the peak is 1 (all 0 when
   * nothing in the image speaks for the class). */
  heatmap: Float32Array;
  rows: number;
  cols: number;
  /** The rectangle of the image, in its own pixels, that the map covers: the centre crop the
   * model sees. */
  region: { x: number; y: number; width: number; height: number };
  /** The map's cells as RGBA (`rows x cols x 4`), in Graft's colour map (viridis). */
  colours: Uint8ClampedArray;
}

export interface ClassMetrics {
  label: string;
  support: number;
  precision: number | null;
  recall: number | null;
}

export interface Evaluation {
  images: number;
  accuracy: number;
  labels: string[];
  perClass: ClassMetrics[];
  /** `confusion[actual][predicted]`; `null` past 100 classes (see `topConfusions`). */
  confusion: number[][] | null;
  /** The largest off-diagonal cells, largest first, at most 50: `count` images of class
   * `actual` predicted as `predicted` (indices into `labels`). */
  topConfusions: { actual: number; predicted: number; count: number }[];
  /** Two classes only; the second label is the positive class. */
  binary?: { positive: string; sensitivity: number | null; specificity: number | null; rocAuc: number | null };
  skipped: SkippedImage[];
}

/** An image added by `addExamples`. */
export interface AddedExample {
  /** Its position in the `images` given. */
  index: number;
  id: string;
  /** Content hash: the first 16 hex digits of the file's SHA-256 (as the CLI computes it). */
  hash: string;
}

/** An object's box: its class and `[x0, y0, x1, y1]` in the image's pixels. */
export interface LabelledBox {
  label: string;
  box: [number, number, number, number];
}

/** A detection example: an image and every object in it (none: background). */
export interface DetectionExample {
  image: GraftImage;
  boxes: LabelledBox[];
  /** Yours, or a new UUID. */
  id?: string;
}

/** A YOLO dataset as `readYoloFolder` reads it. */
export interface YoloFolder {
  /** The `data.yaml` read, as listed. */
  yaml: string;
  names: string[];
  train: YoloImage[];
  val: YoloImage[];
}

export interface YoloImage {
  path: string;
  /** `box` in fractions of the image's width and height. */
  boxes: LabelledBox[];
}

/** A found object. */
export interface DetectedObject extends LabelledBox {
  score: number;
}

/** A detector's training epoch: the loss and its parts. */
export interface DetectionEpoch {
  epoch: number;
  loss: number;
  classLoss: number;
  boxLoss: number;
  centrednessLoss: number;
  valMAP50: number | null;
  valMAP50_95: number | null;
  seconds: number;
}

export type DetectionProgress =
  | { type: 'step'; epoch: number; step: number; totalSteps: number }
  | ({ type: 'epoch' } & DetectionEpoch);

export interface DetectionTrainReport {
  plan: {
    epochs: number; batchSize: number; learningRate: number; inputSize: number; seed: number;
    augment: Record<'flip' | 'crop' | 'rotate' | 'brightness' | 'contrast', boolean>;
    fineTuneBlocks: number; backboneLrFactor: number; trainBatchNorm: boolean;
  };
  history: DetectionEpoch[];
  /** The last epoch's report on the images added with `validation: true`; null without them. */
  evaluation: DetectionEvaluation | null;
  stopped: boolean;
}

/** COCO-style evaluation, the CLI's `graft eval --json` for a detector. */
export interface DetectionEvaluation {
  images: number;
  instances: number;
  /** Mean AP at IoU 0.5, over the classes with objects. */
  mAP50: number;
  /** Mean AP over IoU 0.50:0.05:0.95 (101-point interpolation, as pycocotools). */
  mAP50_95: number;
  precision: number;
  recall: number;
  scoreThreshold: number | null;
  perClass: {
    name: string;
    instances: number;
    detections: number;
    ap50: number | null;
    ap50_95: number | null;
    precision: number | null;
    recall: number | null;
    /** Interpolated precision at recall 0, 0.01, ..., 1 (IoU 0.5): the curve `ap50` averages. */
    precisionRecall: number[] | null;
  }[];
}

export declare class Graft {
  static create(options: CreateOptions): Promise<Graft>;
  static load(options: LoadOptions): Promise<Graft>;
  readonly backend: 'webgpu' | 'cpu';
  readonly fallbackReason: string | null;
  /** How many engines embed images: `workers` on the CPU backend, 1 on WebGPU. */
  readonly workers: number;
  readonly task: 'classify' | 'detect';
  /**
   * Detection (`task: 'detect'`): one image with its boxes, or many, kept letterboxed (a
   * 0.31 MB each at 320 px); `validation: true` holds them out to score every
   * training epoch. A box outside its image or without area rejects the call, naming it;
   * images go in by chunks of eight, each whole or not at all (the error says how many earlier
   * ones were added).
   */
  addExamples(
    image: GraftImage,
    boxes: LabelledBox[],
    options?: { id?: string; validation?: boolean },
  ): Promise<{ ids: string[]; classes: { label: string; count: number }[] }>;
  addExamples(
    examples: DetectionExample[],
    options?: { onProgress?: (progress: unknown) => void; signal?: AbortSignal; validation?: boolean },
  ): Promise<{ ids: string[]; classes: { label: string; count: number }[] }>;
  /** Aborting `signal` skips (code `ABORTED`) the images not added yet; the others stay. */
  addExamples(
    label: string,
    images: GraftImage | GraftImage[] | FileList,
    options?: { ids?: string[]; onProgress?: (progress: GraftProgress) => void; signal?: AbortSignal },
  ): Promise<{
    /** In the order of `embeddings`' rows. */
    added: AddedExample[];
    skipped: SkippedImage[];
    /** `added.length x 1280` features; `addEmbeddings` restores the examples from them. */
    embeddings: Float32Array;
  }>;
  /** The backbone's features of each image, `n x 1280` row-major: what `addEmbeddings` takes. */
  embed(
    images: GraftImage | GraftImage[] | FileList,
    options?: { onProgress?: (progress: GraftProgress) => void; signal?: AbortSignal },
  ): Promise<Float32Array>;
  addEmbeddings(
    label: string,
    embeddings: Float32Array,
    options: { ids: string[]; hashes?: string[]; images?: Blob[] },
  ): Promise<void>;
  /** Each class and its images (detection: its boxes). */
  classes(): { label: string; count: number }[];
  removeClass(label: string): Promise<void>;
  renameClass(from: string, to: string): Promise<void>;
  /** Removes examples by id (detection too: then re-add an image to change its boxes). */
  removeExamples(ids: string[]): Promise<void>;
  train(options?: TrainOptions & TrainCallbacks): Promise<TrainReport>;
  /** Detection: trains the detector; progress events are `DetectionProgress`. */
  train(
    options?: Pick<TrainOptions, 'epochs' | 'batchSize' | 'learningRate' | 'seed' | 'augment'> & {
      onProgress?: (event: DetectionProgress) => void;
      signal?: AbortSignal;
    },
  ): Promise<DetectionTrainReport>;
  /** Detection: the objects in an image scoring at least `minScore` (default 0.25), best first. */
  detect(image: GraftImage, options?: { minScore?: number }): Promise<DetectedObject[]>;
  predict(image: GraftImage, options?: { topK?: number }): Promise<Prediction[]>;
  /** The top classes and the map of the predicted class (or `label`'s); `fine` for a 14x14
   * map, better localised at the cost of a backward pass. */
  explain(
    image: GraftImage,
    options?: { label?: string; topK?: number; fine?: boolean },
  ): Promise<{ predictions: Prediction[]; explanation: Explanation }>;
  evaluate(
    labelledImages: { image: GraftImage; label: string }[],
    options?: { onProgress?: (progress: GraftProgress) => void },
  ): Promise<Evaluation>;
  /** Detection: mAP, per-class AP, precision and recall on images with their true boxes. */
  evaluate(
    examples: { image: GraftImage; boxes: LabelledBox[] }[],
    options?: { onProgress?: (progress: unknown) => void },
  ): Promise<DetectionEvaluation>;
  /**
   * Detection: reads a YOLO dataset folder with the CLI's parser: every file's relative path,
   * with the text of its `data.yaml` and label files (those read; at most 1 MiB each). Boxes
   * come back in fractions of the image.
   */
  readYoloFolder(files: { path: string; text?: string }[]): Promise<YoloFolder>;
  /** The engine's WebAssembly memory in bytes; it only grows, so this is its peak so far. */
  stats(): Promise<{ wasmMemoryBytes: number }>;
  exportModel(): Promise<Uint8Array>;
  loadModel(model: ArrayBuffer | Uint8Array): Promise<unknown>;
  dispose(): void;
}

/**
 * Draws `image` at its own size on `canvas` with the map over the region the model saw (the
 * rest dimmed), at `opacity` (default 0.6).
 */
export declare function drawExplanation(
  canvas: HTMLCanvasElement | OffscreenCanvas,
  image: GraftImage,
  explanation: Explanation,
  options?: { opacity?: number },
): Promise<void>;

export default Graft;
