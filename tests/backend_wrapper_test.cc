// BackendWrapper and PackWriterWrapper forward every call, Prefetch included, so that a
// decorator (the fault-injecting backend, the tests' own) overrides only what it changes.
// Before the wrapper base, FaultInjectionBackend and the tests' hand-written forwarders
// dropped Prefetch: a read-ahead hint never reached the backend under them.
#include "backends/backend_wrapper.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/fault_backend.h"
#include "tests/util/status_matchers.h"

namespace snapfs {
namespace {

// Counts every call that reaches it, then hands it to a memory backend.
struct Counts {
  std::atomic<int> create{0}, read{0}, prefetch{0}, remove{0}, list{0}, space{0}, describe{0};
  std::atomic<int> append{0}, sync{0}, seal{0}, writeback{0};
  // The last Prefetch's arguments, to check that they arrive unchanged.
  std::atomic<PackId> prefetch_id{0};
  std::atomic<uint64_t> prefetch_offset{0}, prefetch_len{0};
};

class CountingWriter final : public PackWriterWrapper {
 public:
  CountingWriter(std::unique_ptr<PackWriter> w, Counts* c)
      : PackWriterWrapper(std::move(w)), c_(c) {}
  Result<uint64_t> Append(std::span<const uint8_t> data) override {
    c_->append++;
    return PackWriterWrapper::Append(data);
  }
  Status Sync() override {
    c_->sync++;
    return PackWriterWrapper::Sync();
  }
  Status Seal() override {
    c_->seal++;
    return PackWriterWrapper::Seal();
  }
  void StartWriteback(uint64_t from, uint64_t to) override {
    c_->writeback++;
    PackWriterWrapper::StartWriteback(from, to);
  }

 private:
  Counts* c_;
};

class CountingBackend final : public BackendWrapper {
 public:
  explicit CountingBackend(Counts* c) : BackendWrapper(NewMemoryBackend()), c_(c) {}
  Result<std::unique_ptr<PackWriter>> Create(PackId id) override {
    c_->create++;
    ASSIGN_OR_RETURN(std::unique_ptr<PackWriter> w, BackendWrapper::Create(id));
    return std::unique_ptr<PackWriter>(std::make_unique<CountingWriter>(std::move(w), c_));
  }
  Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const override {
    c_->read++;
    return BackendWrapper::Read(id, offset, len, out);
  }
  void Prefetch(PackId id, uint64_t offset, uint64_t len) const override {
    c_->prefetch++;
    c_->prefetch_id = id;
    c_->prefetch_offset = offset;
    c_->prefetch_len = len;
  }
  Status Remove(PackId id) override {
    c_->remove++;
    return BackendWrapper::Remove(id);
  }
  Result<std::vector<PackInfo>> List() const override {
    c_->list++;
    return BackendWrapper::List();
  }
  Result<SpaceInfo> Space() const override {
    c_->space++;
    return BackendWrapper::Space();
  }
  std::string Describe() const override {
    c_->describe++;
    return "counting";
  }

 private:
  Counts* c_;
};

// A decorator that overrides one call only, as the tests' own decorators do.
class ReadOnlyTweak final : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;
  Status Read(PackId id, uint64_t offset, size_t len, uint8_t* out) const override {
    return BackendWrapper::Read(id, offset, len, out);
  }
};

// Drives every Backend and PackWriter call once through `b` and checks each arrived at the
// counting backend below it.
void ExpectEveryCallForwarded(Backend& b, const Counts& c) {
  auto w = b.Create(7);
  ASSERT_OK(w);
  const std::vector<uint8_t> data = {1, 2, 3, 4, 5};
  ASSERT_OK((*w)->Append(data));
  EXPECT_EQ((*w)->id(), 7u);
  EXPECT_EQ((*w)->size(), data.size());
  (*w)->StartWriteback(0, data.size());
  ASSERT_OK((*w)->Sync());
  ASSERT_OK((*w)->Seal());
  uint8_t out[5] = {};
  ASSERT_OK(b.Read(7, 0, sizeof(out), out));
  EXPECT_EQ(std::vector<uint8_t>(out, out + 5), data);
  b.Prefetch(7, 4096, 1 << 20);
  auto list = b.List();
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].size, data.size());
  EXPECT_OK(b.Space());
  EXPECT_NE(b.Describe().find("counting"), std::string::npos) << b.Describe();
  ASSERT_OK(b.Remove(7));

  EXPECT_EQ(c.create, 1);
  EXPECT_EQ(c.append, 1);
  EXPECT_EQ(c.sync, 1);
  EXPECT_EQ(c.writeback, 1) << "StartWriteback did not reach the wrapped writer";
  EXPECT_GE(c.seal, 1);
  EXPECT_EQ(c.read, 1);
  EXPECT_EQ(c.prefetch, 1) << "Prefetch did not reach the wrapped backend";
  EXPECT_EQ(c.prefetch_id, 7u);
  EXPECT_EQ(c.prefetch_offset, 4096u);
  EXPECT_EQ(c.prefetch_len, 1u << 20);
  EXPECT_EQ(c.list, 1);
  EXPECT_EQ(c.space, 1);
  EXPECT_EQ(c.describe, 1);
  EXPECT_EQ(c.remove, 1);
}

// A `Wrapper` over a counting backend passes every call down.
template <typename Wrapper>
void ExpectWrapperForwardsEveryCall() {
  Counts c;
  Wrapper b(std::make_unique<CountingBackend>(&c));
  ExpectEveryCallForwarded(b, c);
}

TEST(BackendWrapperTest, PlainWrapperForwardsEveryCall) {
  ExpectWrapperForwardsEveryCall<BackendWrapper>();
}

TEST(BackendWrapperTest, DecoratorOverridingOneCallForwardsTheRest) {
  ExpectWrapperForwardsEveryCall<ReadOnlyTweak>();
}

// The fault backend with no fault set is a pass-through: a sequential reader's read-ahead
// hint reaches the backend under it (it used to stop there).
TEST(BackendWrapperTest, FaultBackendForwardsEveryCallPrefetchIncluded) {
  ExpectWrapperForwardsEveryCall<FaultInjectionBackend>();
}

// Prefetch is a hint that never fails, also while the fault backend fails reads.
TEST(BackendWrapperTest, FaultBackendForwardsPrefetchWhileFailingReads) {
  Counts c;
  FaultInjectionBackend b(std::make_unique<CountingBackend>(&c));
  b.FailReads(true);
  b.Prefetch(3, 0, 100);
  EXPECT_EQ(c.prefetch, 1);
  uint8_t byte;
  EXPECT_CODE(b.Read(3, 0, 1, &byte), Code::kIOError);
  EXPECT_EQ(c.read, 0) << "an injected read failure does not reach the target";
}

// A shared target outlives the wrapper (the tests' SharedBackend keeps a memory backend's
// packs across Store reopens this way).
TEST(BackendWrapperTest, SharedTargetOutlivesWrapper) {
  std::shared_ptr<Backend> mem(NewMemoryBackend());
  {
    BackendWrapper b(mem);
    auto w = b.Create(1);
    ASSERT_OK(w);
    ASSERT_OK((*w)->Append(std::vector<uint8_t>{9}));
    ASSERT_OK((*w)->Seal());
  }
  auto list = mem->List();
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, 1u);
}

}  // namespace
}  // namespace snapfs
