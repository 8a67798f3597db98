-- Step-up (console): the page under /admin an administrator asked for when
-- sent to give the second factor; after it, the browser goes back there.
-- Only same-origin paths under /admin are stored (checked again on use).
ALTER TABLE pending_second_factor ADD COLUMN return_to TEXT;
