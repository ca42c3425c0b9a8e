// devvm's optional native addon (N-API via node-addon-api, so one build serves Node and
// VS Code's Electron). It does what Node cannot: a KVM usability probe with a hard
// deadline, flock(2), passing file descriptors over unix sockets (SCM_RIGHTS), and
// watching the kernel's hot-plug events (netlink kobject uevents).
// Everything here is optional: the helper has a fallback for each function.

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#ifdef __linux__
#include <linux/kvm.h>
#include <linux/netlink.h>
#include <sys/eventfd.h>
#endif

namespace {

// ---------------------------------------------------------------------------
// Errors: JS Error objects carrying `code` (EBADF...) and `errno`, like Node's own.

const char* ErrnoName(int e) {
  switch (e) {
    case EACCES: return "EACCES";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case ECONNRESET: return "ECONNRESET";
    case EINTR: return "EINTR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOBUFS: return "ENOBUFS";
    case ENOENT: return "ENOENT";
    case ENOLCK: return "ENOLCK";
    case ENOMEM: return "ENOMEM";
    case ENOTCONN: return "ENOTCONN";
    case ENOTSOCK: return "ENOTSOCK";
    case EPERM: return "EPERM";
    case EPIPE: return "EPIPE";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "EUNKNOWN";
  }
}

Napi::Error ErrnoError(Napi::Env env, const std::string& msg, const char* syscall, int e) {
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, ErrnoName(e)));
  err.Set("errno", Napi::Number::New(env, e));
  err.Set("syscall", Napi::String::New(env, syscall));
  return err;
}

Napi::Value ThrowErrno(Napi::Env env, const char* what, int e) {
  ErrnoError(env, std::string(what) + ": " + strerror(e), what, e).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const char* msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool IntArg(const Napi::CallbackInfo& info, size_t i, int* out) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  *out = info[i].As<Napi::Number>().Int32Value();
  return true;
}

double NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

std::string Fmt(const char* fmt, double a, double b = 0) {
  char buf[256];
  snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}

// ---------------------------------------------------------------------------
// KVM probe. A worker thread creates a VM with one real-mode vCPU running a tight
// loop; the caller waits until the deadline, then interrupts KVM_RUN (immediate_exit +
// a signal aimed at that thread) so a crawling nested KVM cannot hold us past it.

struct ProbeResult {
  bool ok = false;
  double ms = 0;
  std::string reason;
};

constexpr uint32_t kLoopIterations = 25000000;  // 2 instructions each: ~10 ms on real KVM
constexpr double kGraceMs = 150;                // after the deadline, for the vCPU to stop

ProbeResult Fail(const std::string& what) {
  ProbeResult r;
  r.reason = what;
  return r;
}

ProbeResult FailErrno(const char* what, int e) {
  return Fail(std::string(what) + " failed: " + strerror(e));
}

#ifdef __linux__

struct ProbeState {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;         // the worker has finished (result is valid)
  bool stop = false;         // the caller gave up: leave KVM_RUN, do not re-enter
  struct kvm_run* run = nullptr;  // mapped while the vCPU exists; guarded by m
  ProbeResult result;
};

void KickHandler(int) {}  // only there so the signal interrupts KVM_RUN with EINTR

// A real-time signal nobody else handles: installing a handler on it cannot change
// behaviour that Node, libuv or Electron rely on.
int KickSignal() {
  static std::mutex m;
  static int sig = -1;
  std::lock_guard<std::mutex> lk(m);
  if (sig != -1) return sig;
  sig = 0;
  for (int s = SIGRTMIN + 6; s < SIGRTMAX; s++) {
    struct sigaction old;
    if (sigaction(s, nullptr, &old) != 0) continue;
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = KickHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    if (sigaction(s, &sa, nullptr) == 0) {
      sig = s;
      break;
    }
  }
  return sig;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

struct Mapping {
  void* p = MAP_FAILED;
  size_t len = 0;
  ~Mapping() {
    if (p != MAP_FAILED) munmap(p, len);
  }
};

// Runs on the worker thread. Every early return releases what it made (RAII).
ProbeResult RunProbe(ProbeState& st) {
  Fd kvm;
  kvm.fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm.fd < 0) {
    int e = errno;
    if (e == ENOENT) return Fail("/dev/kvm missing");
    if (e == EACCES || e == EPERM) return Fail("permission denied on /dev/kvm (add the user to the kvm group)");
    if (e == ENXIO || e == ENODEV) return Fail("/dev/kvm present but KVM is not available (module not loaded or virtualization disabled)");
    return FailErrno("opening /dev/kvm", e);
  }
  int api = ioctl(kvm.fd, KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) return Fail("unexpected KVM API version " + std::to_string(api));

  Fd vm;
  vm.fd = ioctl(kvm.fd, KVM_CREATE_VM, 0);
  if (vm.fd < 0) return FailErrno("KVM_CREATE_VM", errno);
  // Needed on Intel hosts without unrestricted guest (real mode via vm86); harmless elsewhere.
  ioctl(vm.fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);

  Mapping mem;
  mem.len = 0x10000;
  mem.p = mmap(nullptr, mem.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem.p == MAP_FAILED) return FailErrno("mmap of guest memory", errno);
  // 16-bit real mode at 0x1000: mov ecx, N; l: dec ecx; jnz l; out 0x10, al; h: hlt; jmp h
  uint8_t code[] = {0x66, 0xB9, 0, 0, 0, 0, 0x66, 0x49, 0x75, 0xFC, 0xE6, 0x10, 0xF4, 0xEB, 0xFD};
  memcpy(code + 2, &kLoopIterations, 4);
  memcpy(static_cast<uint8_t*>(mem.p) + 0x1000, code, sizeof code);

  struct kvm_userspace_memory_region region;
  memset(&region, 0, sizeof region);
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = mem.len;
  region.userspace_addr = reinterpret_cast<uint64_t>(mem.p);
  if (ioctl(vm.fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) return FailErrno("KVM_SET_USER_MEMORY_REGION", errno);

  Fd vcpu;
  vcpu.fd = ioctl(vm.fd, KVM_CREATE_VCPU, 0);
  if (vcpu.fd < 0) return FailErrno("KVM_CREATE_VCPU", errno);
  int runSize = ioctl(kvm.fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (runSize <= 0) return FailErrno("KVM_GET_VCPU_MMAP_SIZE", errno);
  Mapping runMap;
  runMap.len = static_cast<size_t>(runSize);
  runMap.p = mmap(nullptr, runMap.len, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.fd, 0);
  if (runMap.p == MAP_FAILED) return FailErrno("mmap of kvm_run", errno);
  struct kvm_run* run = static_cast<struct kvm_run*>(runMap.p);

  struct kvm_sregs sregs;
  if (ioctl(vcpu.fd, KVM_GET_SREGS, &sregs) < 0) return FailErrno("KVM_GET_SREGS", errno);
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu.fd, KVM_SET_SREGS, &sregs) < 0) return FailErrno("KVM_SET_SREGS", errno);
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = 0x1000;
  regs.rflags = 0x2;
  if (ioctl(vcpu.fd, KVM_SET_REGS, &regs) < 0) return FailErrno("KVM_SET_REGS", errno);

  {
    std::lock_guard<std::mutex> lk(st.m);
    if (st.stop) return Fail("stopped before the guest ran");
    st.run = run;
  }
  // The caller clears st.run under the lock before we unmap it (on every path below).
  struct Unpublish {
    ProbeState& st;
    ~Unpublish() {
      std::lock_guard<std::mutex> lk(st.m);
      st.run = nullptr;
    }
  } unpublish{st};

  double start = NowMs();
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(st.m);
      if (st.stop) return Fail("interrupted");
    }
    if (ioctl(vcpu.fd, KVM_RUN, 0) < 0) {
      int e = errno;
      if (e == EINTR || e == EAGAIN) continue;
      return FailErrno("KVM_RUN", e);
    }
    switch (run->exit_reason) {
      case KVM_EXIT_IO:
        if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x10) {
          ProbeResult r;
          r.ok = true;
          r.ms = NowMs() - start;
          r.reason = Fmt("KVM ran %.0fM instructions in %.1f ms", 2.0 * kLoopIterations / 1e6, r.ms);
          return r;
        }
        break;  // some other port: ignore and carry on
      case KVM_EXIT_INTR:
        break;
      case KVM_EXIT_HLT:
        return Fail("probe guest halted before finishing its loop");
      case KVM_EXIT_FAIL_ENTRY:
        return Fail("KVM could not enter the probe guest (hardware entry failure)");
      case KVM_EXIT_INTERNAL_ERROR:
        return Fail("KVM internal error while running the probe guest");
      case KVM_EXIT_SHUTDOWN:
        return Fail("probe guest triple-faulted");
      default:
        return Fail("unexpected KVM exit reason " + std::to_string(run->exit_reason));
    }
  }
}

void* ProbeThread(void* arg) {
  std::shared_ptr<ProbeState> st = *static_cast<std::shared_ptr<ProbeState>*>(arg);
  delete static_cast<std::shared_ptr<ProbeState>*>(arg);
  // Threads inherit the creator's mask (libuv pool threads block signals): let the kick in.
  int sig = KickSignal();
  if (sig > 0) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  }
  ProbeResult r = RunProbe(*st);
  {
    std::lock_guard<std::mutex> lk(st->m);
    st->result = r;
    st->done = true;
  }
  st->cv.notify_all();
  return nullptr;
}

ProbeResult KvmProbe(double deadlineMs) {
  double t0 = NowMs();
  auto st = std::make_shared<ProbeState>();
  int sig = KickSignal();
  pthread_t tid;
  auto* arg = new std::shared_ptr<ProbeState>(st);
  int e = pthread_create(&tid, nullptr, ProbeThread, arg);
  if (e != 0) {
    delete arg;
    return FailErrno("starting the probe thread", e);
  }
  std::unique_lock<std::mutex> lk(st->m);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(static_cast<int64_t>(deadlineMs * 1000));
  bool inTime = st->cv.wait_until(lk, deadline, [&] { return st->done; });
  if (!inTime) {
    st->stop = true;
    auto grace = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(kGraceMs));
    // Re-kick until it stops: a signal that lands just before KVM_RUN is caught by
    // immediate_exit, one that lands during setup by the stop flag.
    while (!st->done && std::chrono::steady_clock::now() < grace) {
      if (st->run) st->run->immediate_exit = 1;
      if (sig > 0) pthread_kill(tid, sig);
      st->cv.wait_for(lk, std::chrono::milliseconds(10), [&] { return st->done; });
    }
  }
  double elapsed = NowMs() - t0;
  if (!st->done) {
    // Stuck in the kernel (e.g. creating the VM): leave the thread to finish on its own;
    // it owns the shared state, so nothing dangles.
    lk.unlock();
    pthread_detach(tid);
    return Fail(Fmt("KVM did not respond within %.0f ms (stuck creating or running the probe guest)", deadlineMs));
  }
  ProbeResult r = st->result;
  lk.unlock();
  pthread_join(tid, nullptr);
  if (!inTime || (r.ok && elapsed > deadlineMs)) {
    r.ok = false;
    r.ms = elapsed;
    r.reason = Fmt("KVM too slow: probe guest did not finish within %.0f ms (nested virtualization without hardware help?)", deadlineMs);
  } else if (!r.ok) {
    r.ms = elapsed;
  }
  return r;
}

#else  // !__linux__

ProbeResult KvmProbe(double) {
  return Fail("KVM exists only on Linux");
}

#endif

Napi::Object ResultObject(Napi::Env env, const ProbeResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ok", Napi::Boolean::New(env, r.ok));
  o.Set("ms", Napi::Number::New(env, static_cast<double>(static_cast<int64_t>(r.ms * 10)) / 10));
  o.Set("reason", Napi::String::New(env, r.reason));
  return o;
}

double DeadlineArg(const Napi::CallbackInfo& info) {
  double d = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 1500;
  if (!(d >= 1)) d = 1;
  if (d > 60000) d = 60000;
  return d;
}

// kvmProbe(deadlineMs): blocks the calling thread for at most deadline + ~150 ms.
Napi::Value KvmProbeSync(const Napi::CallbackInfo& info) {
  return ResultObject(info.Env(), KvmProbe(DeadlineArg(info)));
}

class ProbeWorker : public Napi::AsyncWorker {
 public:
  ProbeWorker(Napi::Env env, double deadlineMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), deadlineMs_(deadlineMs) {}
  void Execute() override { result_ = KvmProbe(deadlineMs_); }
  void OnOK() override { deferred_.Resolve(ResultObject(Env(), result_)); }
  Napi::Promise Promise() { return deferred_.Promise(); }

 private:
  Napi::Promise::Deferred deferred_;
  double deadlineMs_;
  ProbeResult result_;
};

// kvmProbeAsync(deadlineMs): same probe on libuv's pool, so the event loop keeps running.
Napi::Value KvmProbeAsync(const Napi::CallbackInfo& info) {
  auto* w = new ProbeWorker(info.Env(), DeadlineArg(info));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---------------------------------------------------------------------------
// flock(2): released by the kernel when the last fd of the open file goes, so a
// kill -9'd holder never blocks the next one.

Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!IntArg(info, 0, &fd)) return ThrowType(env, "flock(fd, exclusive, nonblocking): fd must be a number");
  bool exclusive = info.Length() > 1 && info[1].ToBoolean().Value();
  bool nonblocking = info.Length() > 2 && info[2].ToBoolean().Value();
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (nonblocking ? LOCK_NB : 0);
  for (;;) {
    if (flock(fd, op) == 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, "flock", errno);
  }
}

Napi::Value Funlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!IntArg(info, 0, &fd)) return ThrowType(env, "funlock(fd): fd must be a number");
  while (flock(fd, LOCK_UN) != 0) {
    if (errno != EINTR) return ThrowErrno(env, "flock", errno);
  }
  return env.Undefined();
}

// ---------------------------------------------------------------------------
// SCM_RIGHTS. Node's sockets are non-blocking, so wait (bounded) for room or data.

constexpr int kIoTimeoutMs = 5000;

bool WaitFor(int fd, short events, int timeoutMs, int* err) {
  struct pollfd p = {fd, events, 0};
  for (;;) {
    int n = poll(&p, 1, timeoutMs);
    if (n > 0) return true;
    if (n == 0) {
      *err = ETIMEDOUT;
      return false;
    }
    if (errno != EINTR) {
      *err = errno;
      return false;
    }
  }
}

// Runs one send-like call until it moves bytes: retries EINTR, waits out EAGAIN.
// Returns the byte count, or -1 with *err set.
template <typename Op>
ssize_t SendRetrying(int sock, Op op, int* err) {
  for (;;) {
    ssize_t n = op();
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!WaitFor(sock, POLLOUT, kIoTimeoutMs, err)) return -1;
      continue;
    }
    *err = errno;
    return -1;
  }
}

// sendFd(socketFd, fdToSend, data): data (at least one byte; for QMP it can be the
// command itself) travels with the fd, as QEMU's getfd/add-fd expect.
Napi::Value SendFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock, fd;
  if (!IntArg(info, 0, &sock) || !IntArg(info, 1, &fd)) return ThrowType(env, "sendFd(socketFd, fd, data): fds must be numbers");
  std::string data = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : std::string();
  if (data.empty()) data = " ";  // a message with no bytes cannot carry ancillary data

  struct iovec iov;
  iov.iov_base = const_cast<char*>(data.data());
  iov.iov_len = data.size();
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);

#ifdef MSG_NOSIGNAL
  const int flags = MSG_NOSIGNAL;
#else
  const int flags = 0;
#endif
  int err = 0;
  ssize_t n = SendRetrying(sock, [&] { return sendmsg(sock, &msg, flags); }, &err);
  if (n < 0) return ThrowErrno(env, "sendmsg", err);
  // The fd went with the first byte; the rest of a long message follows plainly.
  size_t off = static_cast<size_t>(n);
  while (off < data.size()) {
    ssize_t m = SendRetrying(sock, [&] { return send(sock, data.data() + off, data.size() - off, flags); }, &err);
    if (m < 0) return ThrowErrno(env, "send", err);
    off += static_cast<size_t>(m);
  }
  return env.Undefined();
}

// recvFd(socketFd, timeoutMs?): {fd (-1 if none came), data}. For tests; the caller
// must make sure nothing else (libuv) reads that socket meanwhile.
Napi::Value RecvFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock;
  if (!IntArg(info, 0, &sock)) return ThrowType(env, "recvFd(socketFd, timeoutMs): socketFd must be a number");
  int timeoutMs = kIoTimeoutMs;
  if (info.Length() > 1 && info[1].IsNumber()) timeoutMs = info[1].As<Napi::Number>().Int32Value();
  int err;
  if (!WaitFor(sock, POLLIN, timeoutMs, &err)) return ThrowErrno(env, "recvmsg", err);

  char data[4096];
  struct iovec iov = {data, sizeof data};
  union {
    char buf[CMSG_SPACE(sizeof(int) * 8)];
    struct cmsghdr align;
  } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
#ifdef MSG_CMSG_CLOEXEC
  const int flags = MSG_CMSG_CLOEXEC;
#else
  const int flags = 0;
#endif
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ThrowErrno(env, "recvmsg", errno);

  int received = -1;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      if (received < 0) received = f;
      else close(f);  // only one is reported: do not leak the others
    }
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, received));
  o.Set("data", Napi::String::New(env, std::string(data, static_cast<size_t>(n))));
  return o;
}

// ---------------------------------------------------------------------------
// Host hot-plug events: netlink kobject uevents. A thread polls the socket and an
// eventfd (the stop signal) and hands each message to JS through a thread-safe
// function, so the event loop never waits on the socket. While running, the
// thread-safe function keeps the event loop alive, like any watcher; stop() releases it.

struct UeventItem {
  std::string text;  // the message with NULs as "\n", or an error's message
  int err = 0;       // nonzero: an error; ENOBUFS (events lost) is the only non-fatal one
  const char* syscall = "";
};

struct UeventMonitor;
void UeventCallJs(Napi::Env env, Napi::Function onMessage, UeventMonitor* m, UeventItem* item);
using UeventTsfn = Napi::TypedThreadSafeFunction<UeventMonitor, UeventItem, UeventCallJs>;

struct UeventMonitor {
  int sock = -1;
  int wake = -1;
  pthread_t thread;
  bool started = false;  // main thread only, like halted
  bool halted = false;
  std::atomic<bool> stopped{false};   // no more deliveries to JS
  std::atomic<bool> released{false};  // the tsfn was released (by stop() or a dying thread)
  UeventTsfn tsfn;
  Napi::FunctionReference onError;

  // Main thread only; idempotent. Ends the thread and closes the fds.
  void Halt() {
    if (halted) return;
    halted = true;
    stopped = true;
    if (started) {
      uint64_t one = 1;
      while (write(wake, &one, sizeof one) < 0 && errno == EINTR) {
      }
      pthread_join(thread, nullptr);
      started = false;
    }
    if (sock >= 0) close(sock);
    if (wake >= 0) close(wake);
    sock = wake = -1;
  }

  void Release() {
    if (!released.exchange(true)) tsfn.Release();
  }

  ~UeventMonitor() { Halt(); }
};

void UeventCallJs(Napi::Env env, Napi::Function onMessage, UeventMonitor* m, UeventItem* item) {
  std::unique_ptr<UeventItem> own(item);
  // A null env: the tsfn is being torn down and only frees what is queued.
  if (static_cast<napi_env>(env) == nullptr || !item || m->stopped) return;
  if (item->err == 0) {
    onMessage.Call({Napi::String::New(env, item->text)});
  } else if (!m->onError.IsEmpty()) {
    m->onError.Call({ErrnoError(env, item->text, item->syscall, item->err).Value()});
  }
  // A throwing listener is the process's uncaught exception, as with any event; by
  // default Node would only print a deprecation warning and drop it.
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

#ifdef __linux__

bool UeventPost(UeventMonitor* m, UeventItem* item) {
  if (m->tsfn.NonBlockingCall(item) == napi_ok) return true;
  delete item;  // closing: the environment is going away
  return false;
}

void UeventFatal(UeventMonitor* m, const char* syscall, int e) {
  auto* item = new UeventItem;
  item->text = std::string("ueventMonitor: ") + syscall + " failed: " + strerror(e) + " (monitor stopped)";
  item->err = e;
  item->syscall = syscall;
  UeventPost(m, item);
  m->Release();  // nothing more will come: let the event loop go
}

void* UeventThread(void* arg) {
  auto* m = static_cast<UeventMonitor*>(arg);
  // Uevents are at most a few KiB; anything truncated at this size is not one.
  std::unique_ptr<char[]> buf(new char[16384]);
  for (;;) {
    struct pollfd p[2] = {{m->wake, POLLIN, 0}, {m->sock, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      UeventFatal(m, "poll", errno);
      return nullptr;
    }
    if (p[0].revents) return nullptr;  // stop
    if (!p[1].revents) continue;

    struct sockaddr_nl src;
    memset(&src, 0, sizeof src);
    struct iovec iov = {buf.get(), 16384};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &src;
    msg.msg_namelen = sizeof src;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = recvmsg(m->sock, &msg, MSG_DONTWAIT);
    if (n < 0) {
      int e = errno;
      if (e == EINTR || e == EAGAIN || e == EWOULDBLOCK) continue;
      if (e == ENOBUFS) {
        // The receive buffer overflowed: some events are lost; the caller can rescan.
        auto* item = new UeventItem;
        item->text = "ueventMonitor: events were lost (receive buffer overflow)";
        item->err = e;
        item->syscall = "recvmsg";
        if (!UeventPost(m, item)) return nullptr;
        continue;
      }
      UeventFatal(m, "recvmsg", e);
      return nullptr;
    }
    if (msg.msg_flags & MSG_TRUNC) continue;
    // Only the kernel (port id 0): any process with CAP_NET_ADMIN can send to the group.
    if (msg.msg_namelen != sizeof src || src.nl_family != AF_NETLINK || src.nl_pid != 0) continue;
    size_t len = static_cast<size_t>(n);
    while (len > 0 && buf[len - 1] == '\0') len--;
    auto* item = new UeventItem;
    item->text.assign(buf.get(), len);
    for (char& c : item->text) {
      if (c == '\0') c = '\n';
    }
    if (!UeventPost(m, item)) return nullptr;
  }
}

#endif

// stop(): no message is delivered after it returns; idempotent.
Napi::Value UeventStop(const Napi::CallbackInfo& info) {
  auto* m = static_cast<std::shared_ptr<UeventMonitor>*>(info.Data());
  (*m)->Halt();
  (*m)->Release();
  return info.Env().Undefined();
}

// ueventMonitor(onMessage, onError?): {stop()}. onMessage gets each kernel uevent, its
// NUL separators as "\n" (no trailing one); onError gets an Error with a code: ENOBUFS
// when events were lost (the monitor goes on), anything else once, as it stops.
Napi::Value UeventMonitorStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) return ThrowType(env, "ueventMonitor(onMessage, onError?): onMessage must be a function");
  if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsFunction()) {
    return ThrowType(env, "ueventMonitor(onMessage, onError?): onError must be a function");
  }
#ifndef __linux__
  Napi::Error::New(env, "ueventMonitor: host hot-plug events need Linux (netlink kobject uevents)").ThrowAsJavaScriptException();
  return env.Undefined();
#else
  auto m = std::make_shared<UeventMonitor>();
  m->sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (m->sock < 0) {
    int e = errno;
    return ThrowErrno(env, "ueventMonitor: socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT)", e);
  }
  // A hub full of devices sends a burst; the default buffer can overflow. FORCE needs
  // CAP_NET_ADMIN, the plain one is capped by net.core.rmem_max.
  int size = 1 << 20;
  if (setsockopt(m->sock, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    setsockopt(m->sock, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  struct sockaddr_nl addr;
  memset(&addr, 0, sizeof addr);
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = 1;  // the kernel's events (udev re-broadcasts on group 2)
  if (bind(m->sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    return ThrowErrno(env, "ueventMonitor: bind to the kernel uevent group", e);
  }
  m->wake = eventfd(0, EFD_CLOEXEC);
  if (m->wake < 0) {
    int e = errno;
    return ThrowErrno(env, "ueventMonitor: eventfd", e);
  }
  if (info.Length() > 1 && info[1].IsFunction()) m->onError = Napi::Persistent(info[1].As<Napi::Function>());

  // The tsfn owns one reference; its finalizer (after stop(), or at environment
  // teardown without one) ends the thread before anything is freed.
  auto* tsfnRef = new std::shared_ptr<UeventMonitor>(m);
  m->tsfn = UeventTsfn::New(
      env, info[0].As<Napi::Function>(), "devvm:ueventMonitor", 0, 1, m.get(),
      [](Napi::Env, std::shared_ptr<UeventMonitor>* ref, UeventMonitor*) {
        (*ref)->Halt();
        (*ref)->onError.Reset();
        delete ref;
      },
      tsfnRef);
  if (env.IsExceptionPending()) {
    delete tsfnRef;
    return env.Undefined();
  }
  int e = pthread_create(&m->thread, nullptr, UeventThread, m.get());
  if (e != 0) {
    m->Release();  // its finalizer drops tsfnRef
    return ThrowErrno(env, "ueventMonitor: starting the monitor thread", e);
  }
  m->started = true;

  auto* stopRef = new std::shared_ptr<UeventMonitor>(m);
  Napi::Function stop = Napi::Function::New(env, UeventStop, "stop", stopRef);
  stop.AddFinalizer([](Napi::Env, std::shared_ptr<UeventMonitor>* ref) { delete ref; }, stopRef);
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("stop", stop);
  return handle;
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("kvmProbe", Napi::Function::New(env, KvmProbeSync, "kvmProbe"));
  exports.Set("kvmProbeAsync", Napi::Function::New(env, KvmProbeAsync, "kvmProbeAsync"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
  exports.Set("funlock", Napi::Function::New(env, Funlock, "funlock"));
  exports.Set("sendFd", Napi::Function::New(env, SendFd, "sendFd"));
  exports.Set("recvFd", Napi::Function::New(env, RecvFd, "recvFd"));
  exports.Set("ueventMonitor", Napi::Function::New(env, UeventMonitorStart, "ueventMonitor"));
  return exports;
}

}  // namespace

NODE_API_MODULE(devvm_native, Init)
