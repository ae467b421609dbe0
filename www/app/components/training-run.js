// Train and Stop, as both training panels run a training.

/**
 * Makes `stopButton` stop the training `start` runs, saying `stopping` (what a stop keeps) in
 * `text`. `start(work)` runs `work(signal)` with Stop enabled; a failure is said in `text` too,
 * and thrown on for the panel's notice. `running()` says whether a training runs now.
 */
export function stoppableTraining(stopButton, text, stopping) {
  let controller = null;
  stopButton.addEventListener('click', () => {
    controller?.abort();
    stopButton.disabled = true;
    text.textContent = stopping;
  });
  return {
    running: () => Boolean(controller),
    async start(work) {
      controller = new AbortController();
      stopButton.disabled = false;
      try {
        await work(controller.signal);
      } catch (error) {
        text.textContent = error.code === 'ENGINE_CRASHED' ? 'Training stopped: the engine stopped (see the message above).' : `Training stopped: ${error.message}`;
        throw error;
      } finally {
        controller = null;
        stopButton.disabled = true;
      }
    },
  };
}
