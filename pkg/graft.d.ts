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
  onProgress?: (progress: GraftProgress) => void;
  /** Where `worker.js` is served, if a bundler moved it. */
  workerUrl?: string | URL;
}

export interface LoadOptions extends CreateOptions {
  /** A model file from `exportModel()` or `graft train`. */
  model: ArrayBuffer | Uint8Array;
}

export interface EpochReport {
  /** Which phase the epoch belongs to (given to `onEpoch`). */
  phase?: 'head' | 'fineTune';
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss: number | null;
  valAccuracy: number | null;
  /** Optimiser steps done so far, of `totalSteps` (given to `onEpoch` only). */
  step?: number;
  totalSteps?: number;
}

export interface TrainOptions {
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** Fraction of each class held out for validation (default 0.15). */
  validationSplit?: number;
  seed?: number;
  hiddenUnits?: number;
  dropout?: number;
  /** Phase 2: fine-tune the backbone's last K blocks (and head conv) with the head; 0 = off. */
  fineTuneBlocks?: number;
  /** Default: picked from the number of images (5 up to 1,000 images). */
  fineTuneEpochs?: number;
  fineTuneBatchSize?: number;
  /** The head's learning rate in phase 2 (default 3e-4). */
  fineTuneLearningRate?: number;
  /** The backbone's learning rate as a fraction of the head's (default 0.1). */
  backboneLrFactor?: number;
  /** Update BatchNorm statistics too (default: frozen, inference mode). */
  trainBatchNorm?: boolean;
  /** Phase 2's augmentation; every kind is on unless set to false. */
  augment?: Partial<Record<'flip' | 'crop' | 'rotate' | 'brightness' | 'contrast', boolean>>;
  /** Cycle each image through N fixed augmentations whose frozen-backbone outputs are cached. */
  augmentVariants?: number;
  labelSmoothing?: number;
  /** Class-weighted loss: 'auto' (default) when the largest class is 1.5x the smallest. */
  balance?: 'auto' | 'on' | 'off';
  /** Fine-tuning epochs without a lower validation loss before stopping (default 2; 0 = never). */
  patience?: number;
  onEpoch?: (report: EpochReport) => void;
  onProgress?: (progress: StepProgress) => void;
  /** Aborting stops at the next step or epoch; the best model so far is kept. */
  signal?: AbortSignal;
}

export interface StepProgress {
  phase: 'fineTune';
  epoch: number;
  epochs: number;
  step: number;
  totalSteps: number;
}

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
  cancelled: boolean;
  secondsPerEpoch: number[];
  cacheMegabytes: number;
}

export interface TrainReport {
  history: EpochReport[];
  bestEpoch: number;
  stoppedEarly: boolean;
  trainImages: number;
  validationImages: number;
  labels: string[];
  /** Phase 2, when `fineTuneBlocks` asked for it. */
  fineTune: FineTuneReport | null;
  /** The final model on the held-out images (null without a validation split). */
  validation: Omit<Evaluation, 'skipped'> | null;
  /** Every held-out image and what the best head said about it. */
  validationExamples: ValidationExample[];
}

/** A held-out image, named by its class and its position among that class's added images. */
export interface ValidationExample {
  classIndex: number;
  exampleIndex: number;
  predicted: number;
  /** One probability per label, in `labels` order. */
  probabilities: number[];
}

export interface Prediction {
  label: string;
  score: number;
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
  /** `confusion[actual][predicted]`. */
  confusion: number[][];
  /** Two classes only; the second label is the positive class. */
  binary?: { positive: string; sensitivity: number | null; specificity: number | null; rocAuc: number | null };
  skipped: { name: string; reason: string }[];
}

export declare class Graft {
  static create(options: CreateOptions): Promise<Graft>;
  static load(options: LoadOptions): Promise<Graft>;
  readonly backend: 'webgpu' | 'cpu';
  readonly fallbackReason: string | null;
  addExamples(
    label: string,
    images: GraftImage | GraftImage[] | FileList,
    options?: { onProgress?: (progress: GraftProgress) => void },
  ): Promise<{
    added: number;
    /** Positions in `images` of the images added, in the order of `embeddings`' rows. */
    addedIndices: number[];
    skipped: { index: number; name: string; reason: string }[];
    /** `added x 1280` features; `addEmbeddings` restores the class from them. */
    embeddings: Float32Array;
  }>;
  /**
   * Adds embeddings saved from `addExamples` (`n x 1280`) to a class, created if new; pass the
   * images too (one Blob per row) for the model to be fine-tunable.
   */
  addEmbeddings(label: string, embeddings: Float32Array, images?: Blob[]): Promise<void>;
  classes(): { label: string; count: number }[];
  removeClass(label: string): Promise<void>;
  renameClass(from: string, to: string): Promise<void>;
  train(options?: TrainOptions): Promise<TrainReport>;
  predict(image: GraftImage, options?: { topK?: number }): Promise<Prediction[]>;
  evaluate(
    labelledImages: { image: GraftImage; label: string }[],
    options?: { onProgress?: (progress: GraftProgress) => void },
  ): Promise<Evaluation>;
  /** The engine's WebAssembly memory in bytes; it only grows, so this is its peak so far. */
  stats(): Promise<{ wasmMemoryBytes: number }>;
  exportModel(): Promise<Uint8Array>;
  loadModel(model: ArrayBuffer | Uint8Array): Promise<unknown>;
  dispose(): void;
}

export default Graft;
