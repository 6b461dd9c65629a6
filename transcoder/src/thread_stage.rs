//! A stage of a stream's pipeline on a thread of its own (the ladder, the Opus → AAC
//! conversion): codec work never runs on the async runtime, and a slow stage delays only
//! its own stream.

use std::thread;

use floodlight_media::StampedEvent;
use tokio::sync::mpsc;
use tracing::Span;

/// The pipeline's handle on a stage's thread: events in, `O`s out.
pub(crate) struct ThreadStage<O> {
    input: mpsc::Sender<StampedEvent>,
    output: mpsc::UnboundedReceiver<O>,
}

/// The stage's thread is gone (it panicked): its events are lost.
#[derive(Debug)]
pub(crate) struct StageGone;

impl<O: Send + 'static> ThreadStage<O> {
    /// Starts the thread `name`, running `run` in the caller's tracing span. Its input
    /// holds `queue` events, then the pipeline waits for it to catch up. Its output is
    /// unbounded: the thread must never wait on the pipeline while the pipeline waits on
    /// its input; it holds what the thread produces between two polls of the pipeline.
    pub(crate) fn spawn(
        name: String,
        queue: usize,
        run: impl FnOnce(mpsc::Receiver<StampedEvent>, mpsc::UnboundedSender<O>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (input, input_rx) = mpsc::channel(queue);
        let (output_tx, output) = mpsc::unbounded_channel();
        let span = Span::current();
        thread::Builder::new().name(name).spawn(move || {
            let _entered = span.enter();
            run(input_rx, output_tx);
        })?;
        Ok(ThreadStage { input, output })
    }

    pub(crate) async fn send(&self, event: StampedEvent) -> Result<(), StageGone> {
        self.input.send(event).await.map_err(|_| StageGone)
    }

    /// The next output; `None` once the thread has ended.
    pub(crate) async fn recv(&mut self) -> Option<O> {
        self.output.recv().await
    }

    /// Ends the input and returns everything still coming out of the thread.
    pub(crate) async fn close(self) -> Vec<O> {
        let ThreadStage { input, mut output } = self;
        drop(input);
        let mut rest = Vec::new();
        while let Some(out) = output.recv().await {
            rest.push(out);
        }
        rest
    }
}
