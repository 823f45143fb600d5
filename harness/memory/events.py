"""The events of a step's allocation stream, shared by the tracker (harness.memory.tracing), the allocator
replay (harness.memory.allocator), the fit (harness.memory.fit) and the planner's ScaledTrace. No torch.

``(ALLOC, storage, bytes, category)``, ``(FREE, storage)``, ``(RETYPE, storage, category)``; ``(WORKSPACE,
operand bytes, "forward"|"backward", filter bytes)`` at a convolution; ``(BLAS, thread, lt)`` at a matmul, on the
``FORWARD_THREAD`` (the caller's) or autograd's ``BACKWARD_THREAD``, ``lt`` when it goes through cuBLASLt
(harness.memory.blas); ``(MARK,)`` before each step."""
MB = 1024 * 1024
ALLOC, FREE, RETYPE, WORKSPACE, MARK, BLAS = "alloc", "free", "retype", "workspace", "mark", "blas"
FORWARD_THREAD, BACKWARD_THREAD = "caller", "autograd"
