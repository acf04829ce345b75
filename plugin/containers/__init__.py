"""Docker, in one place: the only package that imports the docker SDK (others take its
names from :mod:`.sdk`).

* :mod:`.client`: the Docker client and facts about an engine;
* :mod:`.labels`: the labels of every container the harness creates;
* :mod:`.managed`: one container's life (created, registered, always removed), used by
  the llama-server, the GPU probe and the sandbox alike;
* :mod:`.registry`: what this process must remove at exit or on SIGTERM;
* :mod:`.watchdog`: a detached process that removes a killed process's containers;
* :mod:`.reaper` and :mod:`.owner`: the session-start sweep of dead runs' containers.
"""
