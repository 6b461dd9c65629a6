//! A rung's picture fitted to the rung before libx264: a picture already at the rung's
//! size and format goes straight in; any other goes through swscale, whose context is
//! made on the rung's thread (it is not `Send`) and remade when the input changes.

use floodlight_media::Frame;

use super::worker::{RungPicture, RungWorker};
use crate::av::{ENCODER_FORMAT, Scaler};

impl RungWorker {
    pub(super) fn encode(
        &mut self,
        job: &RungPicture,
        scaler: &mut Option<Scaler>,
    ) -> Result<Vec<Frame>, crate::av::AvError> {
        let picture = &*job.picture;
        let native = (picture.width(), picture.height(), picture.format())
            == (self.size.0, self.size.1, ENCODER_FORMAT);
        if native {
            return self.encoder.encode(picture, job.pts, job.idr);
        }
        // A publisher may change size or format mid-session only with new parameter
        // sets (a new session); still, a scaler is remade when the input differs.
        if !scaler.as_ref().is_some_and(|s| s.accepts(picture)) {
            *scaler = Some(Scaler::new(
                picture.width(),
                picture.height(),
                picture.format(),
                self.size.0,
                self.size.1,
            )?);
        }
        let scaled = match scaler.as_mut() {
            Some(scaler) => scaler.scale(picture)?,
            None => return Err(crate::av::AvError::InvalidSettings("no scaler".into())),
        };
        self.encoder.encode(&scaled, job.pts, job.idr)
    }
}
