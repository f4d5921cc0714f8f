#pragma once
// Data-parallel training on PyTorch's own distributed engine (c10d): Gloo between CPU workers, NCCL
// between CUDA workers when libtorch is built with it, rendezvous through a c10d TCPStore hosted by
// rank 0. Workers find each other the way torchrun sets them up (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT). The trainer calls this layer: the KTO reference point averaged over the
// global batch (shared/guide/KTO.md, "averaged across data-parallel workers"), gradients all-reduced
// in buckets before each optimizer step, rank 0's parameters broadcast at the start, a shared-seed
// data order of which each rank takes a disjoint slice.
//
// Failure: every collective and the rendezvous are bounded by `timeout`; a dead peer or a timeout
// surfaces as kto::Error ("distributed (rank 1 of 2): ...") on each surviving rank.
// Thread-safety: a DistributedContext and its GradientReducer are used from the training thread
// (the reducer's autograd hooks run inside that thread's backward pass); collectives must be issued
// in the same order on every rank.
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/train/objectives.h"

namespace kto {

struct DistributedOptions {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;                    // index on this machine (picks cuda:LOCAL_RANK)
    std::string master_addr = "127.0.0.1"; // where rank 0 hosts the TCPStore
    int master_port = 29500;
    std::chrono::milliseconds timeout{60000};  // rendezvous and each collective
    std::string backend = "auto";          // "auto" (NCCL on CUDA when built with it, else Gloo), "gloo", "nccl"

    // Reads RANK, WORLD_SIZE, LOCAL_RANK (default: RANK), MASTER_ADDR, MASTER_PORT and, when set,
    // KTO_DIST_TIMEOUT (seconds) and KTO_DIST_BACKEND. Returns nullopt when WORLD_SIZE is unset;
    // throws kto::Error naming the variable when one is missing or malformed.
    static std::optional<DistributedOptions> from_environment();
    // Throws kto::Error naming the first invalid field.
    void validate() const;
};

// Whether this libtorch was built with NCCL (USE_C10D_NCCL).
bool nccl_available();

// Time spent in collectives, for metrics and the benchmark.
struct CommunicationStats {
    int64_t collectives = 0;
    double bytes = 0;          // payload all-reduced / broadcast by this rank
    double wait_seconds = 0;   // time the training thread was blocked on communication
};

class DistributedContext {
public:
    // One worker, no process group: every collective is the identity.
    DistributedContext();
    // Joins the group: blocks until all `world_size` workers have connected, or throws kto::Error
    // after `options.timeout`. `device` is where tensors handed to collectives live (NCCL: a CUDA
    // device; Gloo: the CPU, or CUDA tensors staged through the CPU).
    DistributedContext(const DistributedOptions& options, torch::Device device);
    ~DistributedContext();
    DistributedContext(const DistributedContext&) = delete;
    DistributedContext& operator=(const DistributedContext&) = delete;

    int rank() const { return rank_; }
    int world_size() const { return world_size_; }
    bool is_main() const { return rank_ == 0; }
    bool distributed() const { return world_size_ > 1; }
    std::string backend_name() const;  // "gloo", "nccl" or "none"
    std::chrono::milliseconds timeout() const { return timeout_; }
    // "rank 1 of 2": the prefix of this rank's messages.
    std::string describe() const;

    // Mean over workers of a tensor of the same shape on every rank; a new tensor on t's device.
    torch::Tensor all_reduce_mean(const torch::Tensor& t);
    torch::Tensor all_reduce_max(const torch::Tensor& t);
    // Sum over workers, in place, one collective for the whole list.
    void all_reduce_sum_(std::vector<torch::Tensor>& tensors);
    // Copies `root`'s values into every rank's tensors, in place.
    void broadcast_(std::vector<torch::Tensor>& tensors, int root = 0);
    // Every rank's value of a scalar, in rank order (e.g. a per-rank sample count).
    std::vector<double> all_gather_scalar(double value);
    // Root's text on every rank (trainer state: step, random-stream states).
    void broadcast_string(std::string& text, int root = 0);
    void barrier();
    // Waits until every rank has reached `phase`, for up to `timeout` (longer than the collective
    // timeout: e.g. data preparation, whose length differs per rank when caches differ). Goes through
    // the TCPStore, so no collective times out meanwhile.
    void wait_for_all(const std::string& phase, std::chrono::milliseconds timeout);
    // Throws kto::Error when the ranks disagree on any of `values` (e.g. training-set sizes: every
    // machine must hold the same data), naming `what` and each rank's values.
    void expect_same(const std::vector<double>& values, const std::string& what);

    // The hook KtoParams::all_reduce_mean takes (empty on one worker).
    ScalarAllReduce scalar_all_reduce();

    // Largest |p - p_rank0| over all parameters and ranks (0 when all ranks hold identical weights).
    // Costs a broadcast of every parameter: a check for tests and debugging, not for each step.
    double max_divergence_from_rank0(const std::vector<torch::Tensor>& params);

    const CommunicationStats& stats() const { return stats_; }
    void reset_stats() { stats_ = {}; }

    // Throws the kto::Error a failed collective `what` ends this rank with.
    [[noreturn]] void fail(const std::string& what, const std::exception& e) const;

    struct Impl;  // c10d types stay out of this header
    Impl& impl() { return *impl_; }

private:
    friend class GradientReducer;

    int rank_ = 0;
    int world_size_ = 1;
    std::chrono::milliseconds timeout_{60000};
    std::unique_ptr<Impl> impl_;
    CommunicationStats stats_;
};

// Averages the gradients of a parameter list across workers before each optimizer step, in buckets
// of about `bucket_bytes` (parameters taken in reverse registration order, the order backward tends
// to produce their gradients). With `overlap`, a bucket's all-reduce starts inside backward as soon
// as the last gradient of that bucket is accumulated (autograd post-hooks on the parameters' grad
// accumulators), so communication runs on the backend's threads while backward continues; buckets
// are launched strictly in index order so every rank issues the same collective sequence.
// Use: prepare_for_backward() before the backward pass that completes the step's gradients (the last
// micro-batch when accumulating), then finish() after it.
class GradientReducer {
public:
    GradientReducer(DistributedContext& context, std::vector<torch::Tensor> params,
                    size_t bucket_bytes = 25u << 20, bool overlap = true);
    ~GradientReducer();  // removes its hooks
    GradientReducer(const GradientReducer&) = delete;
    GradientReducer& operator=(const GradientReducer&) = delete;

    void prepare_for_backward();
    // Launches what backward did not, waits, and leaves every parameter's .grad equal to the mean
    // over workers (a parameter with no gradient on a rank counts as zero there; afterwards every
    // parameter has a defined .grad). Works without prepare_for_backward() too (no overlap then).
    void finish();

    size_t bucket_count() const;
    // Buckets whose all-reduce started during the last backward pass (overlap at work).
    size_t launched_in_backward() const;

    struct State;

private:
    std::unique_ptr<State> state_;
};

// Rank r's share of a global batch drawn identically on every rank: global positions r, r + W,
// r + 2W, ... (disjoint across ranks, together covering the batch). `global_batch` must divide by
// `world_size`.
std::vector<int64_t> shard_positions(int64_t global_batch, int rank, int world_size);
// The same rows of a tensor whose first dimension is the global batch.
torch::Tensor shard_rows(const torch::Tensor& global, int rank, int world_size);
// The positions of epoch `epoch`'s permutation of [0, n) (drawn from `seed` and the epoch, the same
// on every rank) that rank r trains on: every W-th entry starting at r. Disjoint across ranks; they
// cover the epoch (the last n mod W entries are dropped so every rank takes the same count).
std::vector<int64_t> epoch_shard(int64_t n, uint64_t seed, int64_t epoch, int rank, int world_size);

}  // namespace kto
