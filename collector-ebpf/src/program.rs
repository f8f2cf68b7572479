use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, map},
    maps::{PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePointContext,
};
use aya_log_ebpf::warn;
use collector_common::{
    CGROUP_MAP_ENTRIES, COMM_LEN, CpuState, EXIT_RING_BYTES, ExitRecord, STAT_COUNT, Stat,
};

/// Kernel `TASK_DEAD` bit of `prev_state`: set on a task's very last switch.
const TASK_DEAD: u32 = 0x80;
/// `BPF_NOEXIST`: insert only if absent.
const BPF_NOEXIST: u64 = 1;

/// Set by the loader from the kernel's BTF before loading; 0 disables exit records.
#[unsafe(no_mangle)]
static TASK_SUM_EXEC_RUNTIME_OFFSET: u64 = 0;

/// Per-CPU switch state and one-cgroup cache. Index 0 only.
#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// cgroup v2 id -> on-CPU nanoseconds flushed from the cache, per CPU. Entries of removed
/// cgroups stay until the collector has read them and deletes them.
#[map]
static CGROUP_CPU_NS: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(CGROUP_MAP_ENTRIES, 0);

/// One `ExitRecord` per exited thread; drained by the collector.
#[map]
static EXITS: RingBuf = RingBuf::with_byte_size(EXIT_RING_BYTES, 0);

/// Health counters, indexed by `Stat`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    try_sched_switch(&ctx);
    0
}

/// The floor for the benchmark: the same attach point doing nothing. Never attached by the
/// collector itself.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_empty(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[inline(always)]
fn try_sched_switch(ctx: &BtfTracePointContext) {
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(state) = CPU_STATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU array slot is only touched by programs on this CPU, and a
    // tracing program is not re-entered on the same CPU.
    let state = unsafe { &mut *state };
    let last = state.last_switch_ns;
    state.last_switch_ns = now;
    let pid_tgid = bpf_get_current_pid_tgid();
    // The first slice after attaching has no start; the idle task (pid 0) is not usage.
    if last == 0 || pid_tgid as u32 == 0 {
        return;
    }
    let delta = now.wrapping_sub(last);
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    if cgroup == state.cached_cgroup {
        state.pending_ns += delta;
    } else {
        flush(ctx, state);
        state.cached_cgroup = cgroup;
        state.pending_ns = delta;
    }

    let prev_state: u32 = ctx.arg(3);
    if prev_state & TASK_DEAD != 0 {
        record_exit(ctx, pid_tgid, cgroup, now);
    }
}

/// Moves the cached nanoseconds into `CGROUP_CPU_NS`. `flush_seq` is odd while the two
/// disagree, so userspace can detect a torn read and retry.
#[inline(always)]
fn flush(ctx: &BtfTracePointContext, state: &mut CpuState) {
    let cgroup = state.cached_cgroup;
    let pending = state.pending_ns;
    if cgroup == 0 || pending == 0 {
        return;
    }
    state.flush_seq += 1;
    if let Some(total) = CGROUP_CPU_NS.get_ptr_mut(cgroup) {
        unsafe { *total += pending };
    } else if CGROUP_CPU_NS.insert(cgroup, pending, BPF_NOEXIST).is_err() {
        // Another CPU may have inserted the key just now; otherwise the map is full.
        if let Some(total) = CGROUP_CPU_NS.get_ptr_mut(cgroup) {
            unsafe { *total += pending };
        } else {
            let hits = bump(Stat::CgroupMapFull, 1);
            bump(Stat::CgroupNsDropped, pending);
            // Powers of two only: a full map under churn must not flood the log.
            if hits & (hits - 1) == 0 {
                warn!(
                    ctx,
                    "cgroup CPU map full ({} entries): {} ns of cgroup {} not attributed, {} times on this CPU",
                    CGROUP_MAP_ENTRIES,
                    pending,
                    cgroup,
                    hits
                );
            }
        }
    }
    state.pending_ns = 0;
    state.flush_seq += 1;
}

#[inline(always)]
fn record_exit(ctx: &BtfTracePointContext, pid_tgid: u64, cgroup: u64, now: u64) {
    let offset = unsafe { core::ptr::read_volatile(&TASK_SUM_EXEC_RUNTIME_OFFSET) };
    if offset == 0 {
        return;
    }
    let prev: *const u8 = ctx.arg(1);
    let runtime_ns = match unsafe { bpf_probe_read_kernel(prev.add(offset as usize) as *const u64) }
    {
        Ok(ns) => ns,
        Err(err) => {
            bump(Stat::ReadFailures, 1);
            warn!(
                ctx,
                "reading sum_exec_runtime of exiting task failed: {}", err
            );
            return;
        }
    };
    let Some(mut entry) = EXITS.reserve::<ExitRecord>(0) else {
        bump(Stat::ExitRingFull, 1);
        return;
    };
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    entry.write(ExitRecord {
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        cgroup_id: cgroup,
        runtime_ns,
        exit_ns: now,
        comm,
    });
    entry.submit(0);
    bump(Stat::ExitRecords, 1);
}

/// Adds `by` to a health counter and returns its new value on this CPU.
#[inline(always)]
fn bump(stat: Stat, by: u64) -> u64 {
    match STATS.get_ptr_mut(stat as u32) {
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
