"""The events of a step's allocation stream, shared by the tracker (harness.memory.tracing), the allocator
replay (harness.memory.allocator), the fit (harness.memory.fit) and the planner's ScaledTrace. No torch."""
MB = 1024 * 1024
ALLOC, FREE, RETYPE, WORKSPACE, MARK = "alloc", "free", "retype", "workspace", "mark"
