#include "core/train/distributed.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

// Gloo's own headers come with Debian's libtorch but not with PyTorch wheels (their libtorch has
// Gloo compiled in, without gloo/*.h): without them, CPU data-parallel runs are unavailable.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/algorithm.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define KTO_HAVE_GLOO 1
#else
#define KTO_HAVE_GLOO 0
#endif

// NCCL exists only in CUDA builds of libtorch; the Debian CPU build has the header but not the define.
// PyTorch wheels define USE_C10D_NCCL but ship nccl.h in a wheel of its own (nvidia-nccl).
#if defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>) && \
    __has_include(<nccl.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define KTO_HAVE_NCCL 1
#else
#define KTO_HAVE_NCCL 0
#endif

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>
#include <cstring>
#include <thread>

#include "core/common/error.h"

namespace kto {

namespace {

// libtorch 2.x split ProcessGroup into a dispatching front and per-backend `Backend`s; the concrete
// Gloo/NCCL classes derive from Backend there and from ProcessGroup in 1.13.
#if TORCH_VERSION_MAJOR >= 2
using CommBackend = c10d::Backend;
#else
using CommBackend = c10d::ProcessGroup;
#endif

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// c10::Error::what() carries a C++ backtrace that helps nobody running a training job.
std::string short_message(const std::exception& e) {
    if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) {
        std::string m = ce->what_without_backtrace();
        // Gloo errors name the source line first; keep the part a user can act on.
        while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
        return m;
    }
    return e.what();
}

std::optional<std::string> env(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    return std::string(v);
}

int env_int(const char* name, const std::string& value, int lo, int hi) {
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(value.c_str(), &end, 10);
    if (errno != 0 || end == value.c_str() || *end != '\0' || v < lo || v > hi)
        throw Error("environment variable " + std::string(name) + "='" + value +
                    "': expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(v);
}

bool is_loopback(const std::string& addr) {
    return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Options

std::optional<DistributedOptions> DistributedOptions::from_environment() {
    auto world = env("WORLD_SIZE");
    if (!world) return std::nullopt;
    DistributedOptions o;
    o.world_size = env_int("WORLD_SIZE", *world, 1, 1 << 20);
    auto rank = env("RANK");
    if (!rank) throw Error("environment: WORLD_SIZE is set but RANK is not (set both, as torchrun does)");
    o.rank = env_int("RANK", *rank, 0, o.world_size - 1);
    o.local_rank = env("LOCAL_RANK") ? env_int("LOCAL_RANK", *env("LOCAL_RANK"), 0, 1 << 16) : o.rank;
    if (o.world_size > 1) {
        auto addr = env("MASTER_ADDR");
        auto port = env("MASTER_PORT");
        if (!addr) throw Error("environment: WORLD_SIZE=" + *world + " but MASTER_ADDR is not set "
                               "(the address of the machine running rank 0)");
        if (!port) throw Error("environment: WORLD_SIZE=" + *world + " but MASTER_PORT is not set "
                               "(a free TCP port on the machine running rank 0)");
        o.master_addr = *addr;
        o.master_port = env_int("MASTER_PORT", *port, 1, 65535);
    }
    if (auto t = env("KTO_DIST_TIMEOUT"))
        o.timeout = std::chrono::milliseconds(int64_t(env_int("KTO_DIST_TIMEOUT", *t, 1, 86400)) * 1000);
    if (auto b = env("KTO_DIST_BACKEND")) o.backend = *b;
    o.validate();
    return o;
}

void DistributedOptions::validate() const {
    if (world_size < 1) throw Error("distributed: world_size must be >= 1, got " + std::to_string(world_size));
    if (rank < 0 || rank >= world_size)
        throw Error("distributed: rank " + std::to_string(rank) + " is outside [0, " +
                    std::to_string(world_size) + ")");
    if (local_rank < 0) throw Error("distributed: local_rank must be >= 0");
    if (master_port < 1 || master_port > 65535)
        throw Error("distributed: master_port " + std::to_string(master_port) + " is not a TCP port");
    if (master_addr.empty()) throw Error("distributed: master_addr is empty");
    if (timeout.count() <= 0) throw Error("distributed: timeout must be positive");
    if (backend != "auto" && backend != "gloo" && backend != "nccl")
        throw Error("distributed: backend '" + backend + "' is not one of auto, gloo, nccl");
    if (backend == "nccl" && !nccl_available())
        throw Error("distributed: backend 'nccl' requested but this libtorch was built without NCCL "
                    "(use gloo)");
}

bool nccl_available() { return KTO_HAVE_NCCL != 0; }

// ---------------------------------------------------------------------------------------------
// Context

struct DistributedContext::Impl {
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<CommBackend> backend;
    std::string backend_name = "none";
    torch::Device comm_device{torch::kCPU};  // where collective buffers live
};

DistributedContext::DistributedContext() : impl_(std::make_unique<Impl>()) {}

DistributedContext::DistributedContext(const DistributedOptions& options, torch::Device device)
    : rank_(options.rank), world_size_(options.world_size), timeout_(options.timeout),
      impl_(std::make_unique<Impl>()) {
    options.validate();
    if (world_size_ == 1) return;  // nothing to talk to

    const bool cuda = device.is_cuda();
    std::string backend = options.backend;
    if (backend == "auto") backend = (cuda && nccl_available()) ? "nccl" : "gloo";
    if (backend == "nccl" && !cuda)
        throw Error("distributed: backend 'nccl' needs a CUDA device, the trainer runs on " + device.str());
    if (backend == "gloo" && !KTO_HAVE_GLOO)
        throw Error("distributed: backend 'gloo' is not available in this build (the libtorch it was built "
                    "against ships without Gloo's headers, as PyTorch wheels do)" +
                    std::string(nccl_available() ? "; use backend nccl on CUDA devices" : ""));

    const std::string where = options.master_addr + ":" + std::to_string(options.master_port);
    try {
        c10d::TCPStoreOptions so;
        so.port = static_cast<uint16_t>(options.master_port);
        so.isServer = rank_ == 0;
        so.numWorkers = static_cast<size_t>(world_size_);
        so.waitWorkers = true;
        so.timeout = timeout_;
        impl_->store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, so);
    } catch (const std::exception& e) {
        throw Error("distributed (" + describe() + "): rendezvous at " + where + " failed within " +
                    std::to_string(timeout_.count() / 1000) + " s: " + short_message(e) +
                    ". Check that all " + std::to_string(world_size_) +
                    " workers were started with the same MASTER_ADDR/MASTER_PORT, that rank 0 is "
                    "running, and that the port is reachable (firewall).");
    }

    try {
        if (backend == "gloo") {
#if KTO_HAVE_GLOO
            auto go = c10d::ProcessGroupGloo::Options::create(timeout_);
            // GLOO_SOCKET_IFNAME picks the network interface as in PyTorch; loopback runs stay on 127.0.0.1.
            if (auto ifname = env("GLOO_SOCKET_IFNAME"))
                go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(*ifname));
            else if (is_loopback(options.master_addr))
                go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
            else
                go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
            go->threads = 2;
            impl_->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, rank_, world_size_, go);
            impl_->backend_name = "gloo";
            // Gloo reduces CPU tensors; CUDA tensors are staged through host memory below.
            impl_->comm_device = torch::kCPU;
#endif
        } else {
#if KTO_HAVE_NCCL
            // Without async error handling a dead peer leaves NCCL kernels waiting forever.
            setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 0);
            setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
            auto no = c10d::ProcessGroupNCCL::Options::create();
            no->timeout = timeout_;
            impl_->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, rank_, world_size_, no);
            impl_->backend_name = "nccl";
            impl_->comm_device = device;
#else
            throw Error("this libtorch was built without NCCL");
#endif
        }
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error("distributed (" + describe() + "): connecting the " + backend + " process group via " +
                    where + " failed: " + short_message(e) +
                    ". A worker did not start or stopped, or the machines cannot reach each other "
                    "(set GLOO_SOCKET_IFNAME to the interface they share).");
    }
    // A first collective proves every pair of workers can talk before any work is done.
    barrier();
}

DistributedContext::~DistributedContext() = default;

std::string DistributedContext::backend_name() const { return impl_->backend_name; }

std::string DistributedContext::describe() const {
    return "rank " + std::to_string(rank_) + " of " + std::to_string(world_size_);
}

void DistributedContext::fail(const std::string& what, const std::exception& e) const {
    throw Error("distributed (" + describe() + "): " + what + " failed: " + short_message(e) +
                ". Another worker stopped, was killed, or did not answer within " +
                std::to_string(timeout_.count() / 1000) +
                " s; this worker ends too (checkpoints already written are complete).");
}

namespace {

// Runs one collective and waits for it, turning c10d failures into a kto::Error on this rank.
template <class Launch>
void run_collective(DistributedContext& ctx, CommunicationStats& stats, const std::string& what,
                    double bytes, Launch&& launch) {
    auto start = Clock::now();
    try {
        c10::intrusive_ptr<c10d::Work> work = launch();
        work->wait();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        ctx.fail(what, e);
    }
    stats.collectives += 1;
    stats.bytes += bytes;
    stats.wait_seconds += seconds_since(start);
}

double nbytes(const std::vector<torch::Tensor>& ts) {
    double b = 0;
    for (const auto& t : ts) b += double(t.numel()) * double(t.element_size());
    return b;
}

}  // namespace

torch::Tensor DistributedContext::all_reduce_mean(const torch::Tensor& t) {
    if (world_size_ == 1) return t.detach().clone();
    std::vector<torch::Tensor> buf{t.detach().to(impl_->comm_device, /*non_blocking=*/false, /*copy=*/true).contiguous()};
    run_collective(*this, stats_, "all-reduce", nbytes(buf), [&] {
        return impl_->backend->allreduce(buf, c10d::AllreduceOptions{});
    });
    return buf[0].div_(world_size_).to(t.device());
}

torch::Tensor DistributedContext::all_reduce_max(const torch::Tensor& t) {
    if (world_size_ == 1) return t.detach().clone();
    std::vector<torch::Tensor> buf{t.detach().to(impl_->comm_device, false, true).contiguous()};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::MAX;
    run_collective(*this, stats_, "all-reduce (max)", nbytes(buf),
                   [&] { return impl_->backend->allreduce(buf, opts); });
    return buf[0].to(t.device());
}

void DistributedContext::all_reduce_sum_(std::vector<torch::Tensor>& tensors) {
    if (world_size_ == 1 || tensors.empty()) return;
    // One flat buffer per call: one collective whatever the number of tensors.
    std::vector<torch::Tensor> flat;
    for (const auto& t : tensors) flat.push_back(t.detach().to(impl_->comm_device).to(torch::kFloat64).reshape(-1));
    std::vector<torch::Tensor> buf{torch::cat(flat)};
    run_collective(*this, stats_, "all-reduce", nbytes(buf),
                   [&] { return impl_->backend->allreduce(buf, c10d::AllreduceOptions{}); });
    int64_t off = 0;
    torch::NoGradGuard ng;
    for (auto& t : tensors) {
        t.copy_(buf[0].narrow(0, off, t.numel()).view(t.sizes()));
        off += t.numel();
    }
}

void DistributedContext::broadcast_(std::vector<torch::Tensor>& tensors, int root) {
    if (world_size_ == 1 || tensors.empty()) return;
    torch::NoGradGuard ng;
    // Grouped by dtype so that every dtype travels as one flat buffer.
    std::map<c10::ScalarType, std::vector<size_t>> groups;
    for (size_t i = 0; i < tensors.size(); ++i) groups[tensors[i].scalar_type()].push_back(i);
    for (const auto& [dtype, idx] : groups) {
        std::vector<torch::Tensor> flat;
        for (size_t i : idx) flat.push_back(tensors[i].detach().to(impl_->comm_device).reshape(-1));
        std::vector<torch::Tensor> buf{torch::cat(flat)};
        c10d::BroadcastOptions opts;
        opts.rootRank = root;
        run_collective(*this, stats_, "broadcast", nbytes(buf),
                       [&] { return impl_->backend->broadcast(buf, opts); });
        int64_t off = 0;
        for (size_t i : idx) {
            auto& t = tensors[i];
            t.copy_(buf[0].narrow(0, off, t.numel()).view(t.sizes()));
            off += t.numel();
        }
    }
}

std::vector<double> DistributedContext::all_gather_scalar(double value) {
    if (world_size_ == 1) return {value};
    auto t = torch::zeros({world_size_}, torch::kFloat64);
    t[rank_] = value;
    std::vector<torch::Tensor> v{t};
    all_reduce_sum_(v);
    auto a = v[0].accessor<double, 1>();
    std::vector<double> out(world_size_);
    for (int i = 0; i < world_size_; ++i) out[i] = a[i];
    return out;
}

void DistributedContext::broadcast_string(std::string& text, int root) {
    if (world_size_ == 1) return;
    std::vector<torch::Tensor> len{torch::tensor({int64_t(text.size())}, torch::kInt64)};
    broadcast_(len, root);
    const int64_t n = len[0].item<int64_t>();
    auto bytes = torch::zeros({std::max<int64_t>(n, 1)}, torch::kUInt8);
    if (rank_ == root && n > 0) std::memcpy(bytes.data_ptr<uint8_t>(), text.data(), size_t(n));
    std::vector<torch::Tensor> b{bytes};
    broadcast_(b, root);
    text.assign(reinterpret_cast<const char*>(b[0].data_ptr<uint8_t>()), size_t(n));
}

void DistributedContext::wait_for_all(const std::string& phase, std::chrono::milliseconds timeout) {
    if (world_size_ == 1) return;
    const std::string key = "kto/phase/" + phase;
    const auto start = Clock::now();
    try {
        int64_t arrived = impl_->store->add(key, 1);
        while (arrived < world_size_) {
            if (Clock::now() - start > timeout)
                throw Error("distributed (" + describe() + "): only " + std::to_string(arrived) + " of " +
                            std::to_string(world_size_) + " workers reached '" + phase + "' within " +
                            std::to_string(timeout.count() / 1000) + " s");
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            arrived = impl_->store->add(key, 0);
        }
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        fail("waiting for all workers to reach '" + phase + "'", e);
    }
}

void DistributedContext::expect_same(const std::vector<double>& values, const std::string& what) {
    if (world_size_ == 1 || values.empty()) return;
    const int64_t k = int64_t(values.size());
    auto t = torch::zeros({world_size_, k}, torch::kFloat64);
    for (int64_t i = 0; i < k; ++i) t[rank_][i] = values[size_t(i)];
    std::vector<torch::Tensor> v{t};
    all_reduce_sum_(v);
    auto a = v[0].accessor<double, 2>();
    bool same = true;
    for (int r = 1; r < world_size_; ++r)
        for (int64_t i = 0; i < k; ++i) same = same && a[r][i] == a[0][i];
    if (same) return;
    std::ostringstream os;
    os << "distributed (" << describe() << "): the workers disagree on " << what << ":";
    for (int r = 0; r < world_size_; ++r) {
        os << " rank " << r << " [";
        for (int64_t i = 0; i < k; ++i) os << (i ? " " : "") << a[r][i];
        os << "]";
    }
    os << ". Every machine must see the same data and settings.";
    throw Error(os.str());
}

void DistributedContext::barrier() {
    if (world_size_ == 1) return;
    run_collective(*this, stats_, "barrier", 0, [&] { return impl_->backend->barrier(c10d::BarrierOptions{}); });
}

ScalarAllReduce DistributedContext::scalar_all_reduce() {
    if (world_size_ == 1) return {};
    return [this](const torch::Tensor& t) { return all_reduce_mean(t); };
}

double DistributedContext::max_divergence_from_rank0(const std::vector<torch::Tensor>& params) {
    if (world_size_ == 1) return 0.0;
    std::vector<torch::Tensor> copies;
    for (const auto& p : params) copies.push_back(p.detach().clone());
    broadcast_(copies, 0);
    double local = 0.0;
    for (size_t i = 0; i < params.size(); ++i)
        local = std::max(local, (params[i].detach().to(torch::kFloat64) - copies[i].to(torch::kFloat64))
                                    .abs().max().item<double>());
    return all_reduce_max(torch::tensor(local, torch::kFloat64)).item<double>();
}

// ---------------------------------------------------------------------------------------------
// Gradient reducer

namespace {

class GradReadyHook : public torch::autograd::FunctionPostHook {
public:
    explicit GradReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
    torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                              const torch::autograd::variable_list&) override {
        fn_();
        return outputs;
    }

private:
    std::function<void()> fn_;
};

}  // namespace

struct GradientReducer::State {
    struct Bucket {
        std::vector<size_t> params;  // indices into `params`
        c10::ScalarType dtype;
        int64_t numel = 0;
        torch::Tensor buffer;        // flat, on the communication device
        c10::intrusive_ptr<c10d::Work> work;
        size_t pending = 0;          // gradients still to arrive this backward
        bool launched = false;
        bool launched_in_backward = false;
    };
    DistributedContext* ctx = nullptr;
    std::vector<torch::Tensor> params;
    std::vector<size_t> bucket_of;    // per param
    std::vector<bool> ready;          // per param, this backward
    std::vector<Bucket> buckets;
    size_t next_launch = 0;
    bool armed = false;
    std::mutex mutex;                 // hooks may run on autograd worker threads (CUDA)
    std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks;
    std::exception_ptr launch_error;

    void launch(Bucket& b, bool in_backward) {
        torch::NoGradGuard ng;
        int64_t off = 0;
        for (size_t i : b.params) {
            const auto& p = params[i];
            auto dst = b.buffer.narrow(0, off, p.numel());
            if (p.grad().defined())
                dst.copy_(p.grad().reshape(-1));
            else
                dst.zero_();
            off += p.numel();
        }
        std::vector<torch::Tensor> t{b.buffer};
        b.work = ctx->impl().backend->allreduce(t, c10d::AllreduceOptions{});
        b.launched = true;
        b.launched_in_backward = in_backward;
    }

    void on_grad_ready(size_t param) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!armed || ready[param]) return;
        ready[param] = true;
        auto& b = buckets[bucket_of[param]];
        if (b.pending > 0) --b.pending;
        // In index order only: every rank must issue the same sequence of collectives.
        try {
            while (next_launch < buckets.size() && buckets[next_launch].pending == 0 &&
                   !buckets[next_launch].launched) {
                launch(buckets[next_launch], true);
                ++next_launch;
            }
        } catch (...) {
            // An exception thrown inside backward would be reported as an autograd failure;
            // keep it for finish(), which names the collective.
            if (!launch_error) launch_error = std::current_exception();
            armed = false;
        }
    }
};

GradientReducer::GradientReducer(DistributedContext& context, std::vector<torch::Tensor> params,
                                 size_t bucket_bytes, bool overlap)
    : state_(std::make_unique<State>()) {
    auto& s = *state_;
    s.ctx = &context;
    s.params = std::move(params);
    s.bucket_of.assign(s.params.size(), 0);
    s.ready.assign(s.params.size(), false);
    if (!context.distributed()) return;
    const auto comm_device = context.impl().comm_device;

    // Reverse registration order approximates the order in which backward finishes gradients.
    std::vector<size_t> order(s.params.size());
    std::iota(order.begin(), order.end(), 0);
    std::reverse(order.begin(), order.end());
    for (size_t i : order) {
        const auto& p = s.params[i];
        const auto dtype = p.scalar_type();
        const double bytes = double(p.numel()) * p.element_size();
        const bool fresh = s.buckets.empty() || s.buckets.back().dtype != dtype ||
                           double(s.buckets.back().numel) * p.element_size() + bytes > double(bucket_bytes);
        if (fresh) {
            State::Bucket b;
            b.dtype = dtype;
            s.buckets.push_back(std::move(b));
        }
        auto& b = s.buckets.back();
        b.params.push_back(i);
        b.numel += p.numel();
        s.bucket_of[i] = s.buckets.size() - 1;
    }
    for (auto& b : s.buckets)
        b.buffer = torch::zeros({b.numel}, torch::TensorOptions().dtype(b.dtype).device(comm_device));

    if (!overlap) return;
    for (size_t i = 0; i < s.params.size(); ++i) {
        const auto& p = s.params[i];
        if (!p.requires_grad()) continue;
        // The grad accumulator is owned weakly by the parameter: keep it alive with the hook.
        auto acc = torch::autograd::impl::grad_accumulator(p);
        if (!acc) continue;
        State* sp = state_.get();
        uintptr_t key = acc->add_post_hook(std::make_unique<GradReadyHook>([sp, i] { sp->on_grad_ready(i); }));
        s.hooks.emplace_back(std::move(acc), key);
    }
}

GradientReducer::~GradientReducer() {
    for (auto& [node, key] : state_->hooks) node->del_post_hook(key);
}

void GradientReducer::prepare_for_backward() {
    auto& s = *state_;
    if (!s.ctx->distributed()) return;
    std::lock_guard<std::mutex> lock(s.mutex);
    for (auto& b : s.buckets) {
        b.pending = b.params.size();
        b.launched = b.launched_in_backward = false;
        b.work.reset();
    }
    std::fill(s.ready.begin(), s.ready.end(), false);
    s.next_launch = 0;
    s.launch_error = nullptr;
    s.armed = !s.hooks.empty();
}

void GradientReducer::finish() {
    auto& s = *state_;
    auto& ctx = *s.ctx;
    if (!ctx.distributed()) {
        for (auto& p : s.params)
            if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        return;
    }
    const auto start = Clock::now();
    std::unique_lock<std::mutex> lock(s.mutex);
    s.armed = false;
    const int w = ctx.world_size();
    try {
        if (s.launch_error) std::rethrow_exception(s.launch_error);
        for (; s.next_launch < s.buckets.size(); ++s.next_launch)
            if (!s.buckets[s.next_launch].launched) s.launch(s.buckets[s.next_launch], false);
        for (auto& b : s.buckets) b.work->wait();
    } catch (const std::exception& e) {
        for (auto& b : s.buckets) b.work.reset();
        ctx.fail("gradient all-reduce", e);
    }
    torch::NoGradGuard ng;
    double bytes = 0;
    for (auto& b : s.buckets) {
        b.buffer.div_(w);
        int64_t off = 0;
        for (size_t i : b.params) {
            auto& p = s.params[i];
            auto src = b.buffer.narrow(0, off, p.numel()).view(p.sizes());
            if (p.grad().defined())
                p.mutable_grad().copy_(src);
            else
                p.mutable_grad() = src.to(p.device()).clone();
            off += p.numel();
        }
        bytes += double(b.numel) * b.buffer.element_size();
        b.work.reset();
    }
    ctx.stats_.collectives += int64_t(s.buckets.size());
    ctx.stats_.bytes += bytes;
    ctx.stats_.wait_seconds += seconds_since(start);
}

size_t GradientReducer::bucket_count() const { return state_->buckets.size(); }

size_t GradientReducer::launched_in_backward() const {
    size_t n = 0;
    for (const auto& b : state_->buckets) n += b.launched_in_backward ? 1 : 0;
    return n;
}

// ---------------------------------------------------------------------------------------------
// Sharding

std::vector<int64_t> shard_positions(int64_t global_batch, int rank, int world_size) {
    if (world_size < 1 || rank < 0 || rank >= world_size)
        throw Error("shard_positions: rank " + std::to_string(rank) + " outside [0, " + std::to_string(world_size) + ")");
    if (global_batch % world_size != 0)
        throw Error("distributed: global batch " + std::to_string(global_batch) + " does not divide by " +
                    std::to_string(world_size) + " workers");
    std::vector<int64_t> out;
    for (int64_t i = rank; i < global_batch; i += world_size) out.push_back(i);
    return out;
}

torch::Tensor shard_rows(const torch::Tensor& global, int rank, int world_size) {
    if (world_size == 1) return global;
    auto pos = shard_positions(global.size(0), rank, world_size);
    return global.index_select(0, torch::tensor(pos, torch::kInt64).to(global.device()));
}

std::vector<int64_t> epoch_shard(int64_t n, uint64_t seed, int64_t epoch, int rank, int world_size) {
    if (world_size < 1 || rank < 0 || rank >= world_size)
        throw Error("epoch_shard: rank " + std::to_string(rank) + " outside [0, " + std::to_string(world_size) + ")");
    // A CPU generator seeded from (seed, epoch) gives the same permutation on every rank and machine.
    auto gen = at::detail::createCPUGenerator(seed * 1000003ULL + uint64_t(epoch));
    auto perm = torch::randperm(n, gen, torch::kInt64);
    const int64_t used = n - n % world_size;
    std::vector<int64_t> out;
    auto a = perm.accessor<int64_t, 1>();
    for (int64_t i = rank; i < used; i += world_size) out.push_back(a[i]);
    return out;
}

}  // namespace kto
