"""A simulated ComfyUI (+ ComfyUI-Distributed) server: real HTTP and websocket, no GPU, no models.

It speaks the protocol recorded from ComfyUI 0.3.64 and ComfyUI-Distributed 1.4.4
(see tests/integration/test_sim_fidelity.py), for the demo, the tests and the benchmarks.
"""
