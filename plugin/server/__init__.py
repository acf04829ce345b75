"""llama-server in a Docker container: spec, start, wait for /health, always tear down.

* :mod:`.spec` turns a Profile into the container's spec (pure; tested for every profile
  of models.conf);
* :mod:`.images` finds or pulls the image, :mod:`.gpus` checks the GPUs a profile asks for
  before anything loads;
* :mod:`.lifecycle` starts the container, streams its log (:mod:`.logs`), polls
  ``/health`` (:mod:`.health`) and yields a ServerHandle; the container is removed
  afterwards, on errors and Ctrl-C too. ``BASE_URL`` profiles get a handle for the
  running server;
* :mod:`.lazy` starts it only when a request must really be sent, one profile per GPU.
"""
