use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePointContext,
};
use aya_log_ebpf::warn;
use collector_common::{
    CGROUP_MAP_ENTRIES, COMM_LEN, CgroupTime, CpuState, EXIT_RING_BYTES, ExitRecord, RECENT_SLICES,
    RecentSlice, STAT_COUNT, Stat, WaitPair,
};

/// Kernel `TASK_DEAD` bit of `prev_state`: set on a task's very last switch.
const TASK_DEAD: u32 = 0x80;
/// `BPF_NOEXIST`: insert only if absent.
const BPF_NOEXIST: u64 = 1;

// Member offsets, set by the loader from the kernel's BTF (see `collector_common::globals`).
// Read-only data: the verifier sees their values as constants, so the loads below are
// checked against BTF like any `task->field` access in C.
#[unsafe(no_mangle)]
static OFF_TASK_RUNTIME: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_PICK_RUNTIME: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_POLICY: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_PID: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_TGID: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_START_TIME: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_CGROUPS: u64 = 0;
#[unsafe(no_mangle)]
static OFF_CSS_SET_DFL_CGRP: u64 = 0;
#[unsafe(no_mangle)]
static OFF_CGROUP_KN: u64 = 0;
#[unsafe(no_mangle)]
static OFF_KERNFS_NODE_ID: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_RUN_DELAY: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_PCOUNT: u64 = 0;
#[unsafe(no_mangle)]
static OFF_TASK_SIGNAL: u64 = 0;
#[unsafe(no_mangle)]
static OFF_SIGNAL_MAXRSS: u64 = 0;

// The statics' and programs' identifiers are the names the loader looks up
// (`collector_common::names`); rename both together.

/// Per-CPU switch state and one-cgroup cache. Index 0 only.
#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// cgroup v2 id -> on-CPU and run-queue wait nanoseconds flushed from the cache, per CPU.
/// Entries of removed cgroups stay until the collector has read them and deletes them.
#[map]
static CGROUP_TIME: PerCpuHashMap<u64, CgroupTime> =
    PerCpuHashMap::with_max_entries(CGROUP_MAP_ENTRIES, 0);

/// (waiter cgroup, holder cgroup) -> run-queue wait nanoseconds, per CPU: whose slices ran
/// while the waiter's tasks waited. Entries of removed cgroups stay until the collector has
/// read them and deletes them.
#[map]
static WAIT_BEHIND: PerCpuHashMap<WaitPair, u64> =
    PerCpuHashMap::with_max_entries(CGROUP_MAP_ENTRIES, 0);

/// One `ExitRecord` per exited thread; drained by the collector.
#[map]
static EXITS: RingBuf = RingBuf::with_byte_size(EXIT_RING_BYTES, 0);

/// Health counters, indexed by `Stat`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: the pointers are the tracepoint's `prev` and `next` tasks; every read goes
    // through offsets the verifier checks against the kernel's BTF.
    unsafe { try_sched_switch::<true, true>(&ctx) };
    0
}

/// The accounting program as it was before run-queue wait: CPU time only. The benchmark's
/// baseline for what wait costs; never attached by the collector itself.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_cpu_only(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: as in `sched_switch`.
    unsafe { try_sched_switch::<false, false>(&ctx) };
    0
}

/// The accounting program as it was before wait attribution: CPU time and run-queue wait.
/// The benchmark's baseline for what attribution costs; never attached by the collector.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_unattributed(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: as in `sched_switch`.
    unsafe { try_sched_switch::<true, false>(&ctx) };
    0
}

/// The floor for the benchmark: the same attach point doing nothing. Never attached by the
/// collector itself.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_empty(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// Reads a field of a kernel object at a loader-provided offset.
#[inline(always)]
unsafe fn field<T: Copy>(base: *const u8, offset: &'static u64) -> T {
    // SAFETY: callers pass a kernel object and a BTF member offset of its type (verifier-checked).
    unsafe { *(base.add(core::ptr::read_volatile(offset) as usize) as *const T) }
}

/// `WAIT` adds run-queue wait to the CPU accounting, `ATTRIBUTE` charges each wait to who held
/// the CPU (both false only for the benchmark's baselines).
#[inline(always)]
unsafe fn try_sched_switch<const WAIT: bool, const ATTRIBUTE: bool>(ctx: &BtfTracePointContext) {
    let Some(state) = CPU_STATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU slot is only touched by programs on this CPU, and a tracing program
    // is not re-entered on the same CPU.
    let state = unsafe { &mut *state };
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
    let prev_runtime: u64 = unsafe { field(prev, &OFF_TASK_RUNTIME) };
    // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
    let pid: i32 = unsafe { field(prev, &OFF_TASK_PID) };
    let prev_delay: u64 = if WAIT {
        // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
        unsafe { field(prev, &OFF_TASK_RUN_DELAY) }
    } else {
        0
    };
    // The slice is what the kernel added to prev's runtime since it switched in here, and
    // the wait is what it added to prev's run_delay since then: the wait that ended at that
    // switch-in (added by `sched_info_arrive` just after the tracepoint). A queued task moved
    // to another CPU by the load balancer has the part of its wait spent on the old queue
    // added at the move, before its switch-in here; that part is not counted.
    let (slice, wait) = if state.in_task == prev as u64 {
        (
            prev_runtime.wrapping_sub(state.in_runtime_ns),
            prev_delay.wrapping_sub(state.in_run_delay_ns),
        )
    } else if state.in_task == 0 || pid == 0 {
        // The first switch seen on this CPU has no start; idle is not usage.
        (0, 0)
    } else {
        // A switch on this CPU did not reach the program (the kernel counted more context
        // switches than program runs): the task it switched out (`in_task`) lost its slice,
        // and the task it switched in (`prev`) has no start. Both are recovered where exact.
        // SAFETY: this CPU's slot; the task it names is read only with bpf_probe_read_kernel.
        unsafe { recover_missed_switch_out::<WAIT>(ctx, state) };
        // The switch-in was not seen, so there is no run_delay to subtract from: no wait is
        // counted for this slice (the kernel's total would charge all of prev's past waits).
        // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
        (unsafe { unseen_switch_in(prev, prev_runtime) }, 0)
    };
    state.in_task = next as u64;
    // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
    state.in_runtime_ns = unsafe { field(next, &OFF_TASK_RUNTIME) };
    if WAIT {
        // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
        state.in_run_delay_ns = unsafe { field(next, &OFF_TASK_RUN_DELAY) };
        // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
        state.in_pcount = unsafe { field(next, &OFF_TASK_PCOUNT) };
    }

    let prev_state: u32 = ctx.arg(3);
    if ATTRIBUTE && pid == 0 {
        // Idle: a wait reaching back to it began while this CPU was idle.
        remember(state, prev as u64, 0, u64::MAX);
    }
    // The idle task (pid 0) is not usage; an empty slice without wait changes nothing.
    let charged = (slice | wait) != 0;
    if pid == 0 || (!charged && prev_state & TASK_DEAD == 0) {
        return;
    }
    // SAFETY: the tracepoint's task, then BTF-typed members (css_set, cgroup, kernfs_node).
    let cgroup: u64 = unsafe {
        let css_set: *const u8 = field(prev, &OFF_TASK_CGROUPS);
        let cgrp: *const u8 = field(css_set, &OFF_CSS_SET_DFL_CGRP);
        let kn: *const u8 = field(cgrp, &OFF_CGROUP_KN);
        field(kn, &OFF_KERNFS_NODE_ID)
    };
    if cgroup == state.cached_cgroup {
        state.pending_ns += slice;
        if WAIT {
            state.pending_wait_ns += wait;
        }
    } else if charged {
        flush(ctx, state);
        state.cached_cgroup = cgroup;
        state.pending_ns = slice;
        state.pending_wait_ns = wait;
    }
    if ATTRIBUTE {
        if wait != 0 {
            attribute_wait(ctx, state, prev as u64, cgroup, wait);
        }
        if slice != 0 {
            remember(state, prev as u64, cgroup, slice);
        }
    }

    // A task's final runtime is exact whatever was seen of its slices.
    if prev_state & TASK_DEAD != 0 {
        record_exit(prev, pid, cgroup, prev_runtime);
    }
}

/// Records a slice that just ended on this CPU as the newest of `state.recent`.
#[inline(always)]
fn remember(state: &mut CpuState, task: u64, cgroup: u64, ns: u64) {
    let head = state.recent_head.wrapping_add(1);
    state.recent_head = head;
    state.recent[(head as usize) & (RECENT_SLICES - 1)] = RecentSlice { task, cgroup, ns };
}

/// Charges `wait`, the run-queue wait of `task` (of `cgroup`) on this CPU that ended when its
/// slice began, to the slices that ran here before that slice, newest first, each up to its
/// length: the time they held the CPU while it waited. The walk stops at the task's own
/// earlier slice (it was not waiting before that), at the idle task (the wait began on an
/// idle CPU: a wake-up's latency) or after [`RECENT_SLICES`]. What the slices leave over
/// is time on the CPU in no task's runtime (interrupts, the switches themselves): when the
/// walk reached the task's own slice, every holder of the wait is known and it goes to the
/// one that held the CPU longest; otherwise to holder 0, nobody.
#[inline(always)]
fn attribute_wait(
    ctx: &BtfTracePointContext,
    state: &mut CpuState,
    task: u64,
    cgroup: u64,
    wait: u64,
) {
    let mut left = wait;
    let mut at = state.recent_head as usize;
    let (mut own, mut top, mut top_part) = (false, 0u64, 0u64);
    for _ in 0..RECENT_SLICES {
        let held = state.recent[at & (RECENT_SLICES - 1)];
        if held.task == task {
            own = true;
            break;
        }
        if left == 0 || held.ns == 0 {
            break;
        }
        let part = if held.ns < left { held.ns } else { left };
        if held.cgroup != 0 && part > top_part {
            (top, top_part) = (held.cgroup, part);
        }
        charge_behind(ctx, state, cgroup, held.cgroup, part);
        left -= part;
        at = at.wrapping_sub(1);
    }
    if left != 0 {
        charge_behind(ctx, state, cgroup, if own { top } else { 0 }, left);
    }
}

/// Adds `ns` of `waiter`'s wait behind `holder`: cached while the pair stays the same (two
/// tasks taking turns on a CPU repeat the same pairs), else the cached pair is flushed.
#[inline(always)]
fn charge_behind(
    ctx: &BtfTracePointContext,
    state: &mut CpuState,
    waiter: u64,
    holder: u64,
    ns: u64,
) {
    if state.behind.waiter == waiter && state.behind.holder == holder {
        state.pending_behind_ns += ns;
        return;
    }
    let pending = state.pending_behind_ns;
    if state.behind.waiter != 0 && pending != 0 {
        let pair = state.behind;
        state.flush_seq += 1;
        if let Some(total) = WAIT_BEHIND.get_ptr_mut(&pair) {
            // SAFETY: a per-CPU value, only touched by programs on this CPU.
            unsafe { *total += pending };
        } else if WAIT_BEHIND.insert(&pair, &pending, BPF_NOEXIST).is_err() {
            if let Some(total) = WAIT_BEHIND.get_ptr_mut(&pair) {
                // SAFETY: as above.
                unsafe { *total += pending };
            } else {
                let hits = bump(Stat::BehindNsDropped, pending);
                if hits == pending {
                    warn!(
                        ctx,
                        "wait attribution map full ({} entries): some waits are not attributed",
                        CGROUP_MAP_ENTRIES
                    );
                }
            }
        }
        state.flush_seq += 1;
    }
    state.behind = WaitPair { waiter, holder };
    state.pending_behind_ns = ns;
}

/// Rare: `prev` started running here without this program seeing it switch in (observed
/// on 6.18 for a few switches a second under fork/exec churn). For fair-class tasks the
/// scheduler's own pick-time snapshot gives the slice; for others it is counted as lost.
#[inline(never)]
unsafe fn unseen_switch_in(prev: *const u8, prev_runtime: u64) -> u64 {
    bump(Stat::UnseenSwitchIn, 1);
    // SCHED_NORMAL, SCHED_BATCH and SCHED_IDLE are the fair class.
    // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
    let policy: u32 = unsafe { field(prev, &OFF_TASK_POLICY) };
    if matches!(policy, 0 | 3 | 5) {
        // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
        let picked_at: u64 = unsafe { field(prev, &OFF_TASK_PICK_RUNTIME) };
        prev_runtime.saturating_sub(picked_at)
    } else {
        bump(Stat::SliceLost, 1);
        0
    }
}

/// The slice of the task whose switch-out this CPU's program missed (`in_task`), charged to
/// its cgroup. Exact in two cases, told apart by its `sched_info.pcount` (counted at each
/// switch-in, after the tracepoint: it was `in_pcount + 1` once it switched in here):
/// - not picked since: its `se.prev_sum_exec_runtime` still equals the runtime this CPU
///   recorded at its switch-in (which a freed or reused task_struct will not match), and
///   its runtime now is its runtime at the missed switch;
/// - picked once since (`pcount` one higher): no runtime accrues off a CPU, so its runtime
///   at that pick (`prev_sum_exec_runtime`) is its runtime at the missed switch.
/// Otherwise the slice is counted as lost. Rare, so helper calls (`bpf_probe_read_kernel`:
/// the task may be gone) are fine here.
#[inline(always)]
unsafe fn recover_missed_switch_out<const WAIT: bool>(
    ctx: &BtfTracePointContext,
    state: &mut CpuState,
) {
    let task = state.in_task as *const u8;
    let read = |base: *const u8, offset: &'static u64| -> Option<u64> {
        // SAFETY: arithmetic only; the load is bpf_probe_read_kernel's, which fails cleanly.
        let at = unsafe { base.add(core::ptr::read_volatile(offset) as usize) } as *const u64;
        // SAFETY: bpf_probe_read_kernel fails cleanly on a bad address.
        unsafe { bpf_probe_read_kernel(at) }.ok()
    };
    let picked_at = read(task, &OFF_TASK_PICK_RUNTIME);
    let runtime = read(task, &OFF_TASK_RUNTIME);
    let pid = read(task, &OFF_TASK_PID).map(|v| v as u32);
    let (Some(picked_at), Some(runtime), Some(pid)) = (picked_at, runtime, pid) else {
        bump(Stat::MissedSwitchLost, 1);
        return;
    };
    // The idle task's slice is not usage.
    if pid == 0 {
        return;
    }
    let picked_again =
        || WAIT && read(task, &OFF_TASK_PCOUNT) == Some(state.in_pcount.wrapping_add(2));
    let end = if picked_at == state.in_runtime_ns && runtime >= picked_at {
        runtime
    } else if picked_at > state.in_runtime_ns && picked_again() {
        picked_at
    } else {
        bump(Stat::MissedSwitchLost, 1);
        return;
    };
    let cgroup = (|| {
        let css_set = read(task, &OFF_TASK_CGROUPS)? as *const u8;
        let cgrp = read(css_set, &OFF_CSS_SET_DFL_CGRP)? as *const u8;
        let kn = read(cgrp, &OFF_CGROUP_KN)? as *const u8;
        read(kn, &OFF_KERNFS_NODE_ID)
    })();
    let Some(cgroup) = cgroup.filter(|c| *c != 0) else {
        bump(Stat::MissedSwitchLost, 1);
        return;
    };
    let slice = end - state.in_runtime_ns;
    bump(Stat::MissedSwitchRecovered, 1);
    if cgroup == state.cached_cgroup {
        state.pending_ns += slice;
    } else {
        add_to_hash(
            ctx,
            state,
            cgroup,
            &CgroupTime {
                cpu_ns: slice,
                wait_ns: 0,
            },
        );
    }
}

/// Adds `pending` to a `CGROUP_TIME` value.
#[inline(always)]
unsafe fn add(total: *mut CgroupTime, pending: &CgroupTime) {
    // SAFETY: this CPU's value, touched only by programs on this CPU (never re-entered).
    unsafe {
        (*total).cpu_ns += pending.cpu_ns;
        (*total).wait_ns += pending.wait_ns;
    }
}

/// Moves the cached nanoseconds into `CGROUP_TIME`. `flush_seq` is odd while the two
/// disagree, so userspace can detect a torn read and retry.
#[inline(always)]
fn flush(ctx: &BtfTracePointContext, state: &mut CpuState) {
    let cgroup = state.cached_cgroup;
    let pending = CgroupTime {
        cpu_ns: state.pending_ns,
        wait_ns: state.pending_wait_ns,
    };
    if cgroup == 0 || (pending.cpu_ns | pending.wait_ns) == 0 {
        return;
    }
    add_to_hash(ctx, state, cgroup, &pending);
    state.pending_ns = 0;
    state.pending_wait_ns = 0;
}

/// Adds `pending` to `cgroup`'s `CGROUP_TIME` value. `flush_seq` is odd meanwhile, so a
/// reader that saw this CPU's pending figures before can tell they may be in the hash now.
#[inline(always)]
fn add_to_hash(
    ctx: &BtfTracePointContext,
    state: &mut CpuState,
    cgroup: u64,
    pending: &CgroupTime,
) {
    state.flush_seq += 1;
    if let Some(total) = CGROUP_TIME.get_ptr_mut(cgroup) {
        // SAFETY: this CPU's value in the per-CPU hash, touched only by programs here.
        unsafe { add(total, pending) };
    } else if CGROUP_TIME.insert(cgroup, *pending, BPF_NOEXIST).is_err() {
        // Another CPU may have inserted the key just now; otherwise the map is full.
        if let Some(total) = CGROUP_TIME.get_ptr_mut(cgroup) {
            // SAFETY: this CPU's value in the per-CPU hash, touched only by programs here.
            unsafe { add(total, pending) };
        } else {
            let hits = bump(Stat::CgroupMapFull, 1);
            bump(Stat::CgroupNsDropped, pending.cpu_ns);
            bump(Stat::CgroupWaitNsDropped, pending.wait_ns);
            // Powers of two only: a full map under churn must not flood the log.
            if hits & (hits - 1) == 0 {
                warn!(
                    ctx,
                    "cgroup CPU map full ({} entries): {} ns of cgroup {} not attributed ({} times on this CPU)",
                    CGROUP_MAP_ENTRIES,
                    pending.cpu_ns,
                    cgroup,
                    hits
                );
            }
        }
    }
    state.flush_seq += 1;
}

/// A task's last switch: its runtime is final, so record it for per-process totals. Rare
/// (once per thread), so helper calls are fine here.
#[inline(always)]
fn record_exit(prev: *const u8, pid: i32, cgroup: u64, runtime_ns: u64) {
    let Some(mut entry) = EXITS.reserve::<ExitRecord>(0) else {
        bump(Stat::ExitRingFull, 1);
        return;
    };
    // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
    let tgid: i32 = unsafe { field(prev, &OFF_TASK_TGID) };
    // `prev` is still `current` at this tracepoint, so this is its name.
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    entry.write(ExitRecord {
        tgid: tgid as u32,
        pid: pid as u32,
        cgroup_id: cgroup,
        runtime_ns,
        // SAFETY: a helper without preconditions.
        exit_ns: unsafe { bpf_ktime_get_ns() },
        // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
        start_ns: unsafe { field(prev, &OFF_TASK_START_TIME) },
        // SAFETY: the tracepoint's task and a BTF member offset (the verifier checks the load).
        max_rss_pages: unsafe {
            let signal: *const u8 = field(prev, &OFF_TASK_SIGNAL);
            field(signal, &OFF_SIGNAL_MAXRSS)
        },
        comm,
    });
    entry.submit(0);
    bump(Stat::ExitRecords, 1);
}

/// Adds `by` to a health counter and returns its new value on this CPU.
#[inline(always)]
fn bump(stat: Stat, by: u64) -> u64 {
    match STATS.get_ptr_mut(stat as u32) {
        // SAFETY: this CPU's counter, touched only by programs on this CPU.
        Some(slot) => unsafe {
            *slot += by;
            *slot
        },
        None => 0,
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
