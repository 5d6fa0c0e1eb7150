import { New, ResourcePool, InvalidAddressError, UnknownNetworkError } from '../lib/index.js';

const pool = new ResourcePool({ max: 1 });

test.each(['nohost', 'host:', 'host:99999', 'host:0', '::1:80', '', ':80', '[127.0.0.1]:80', 'a b:80', 'host:8x'])(
  'New() rejects the malformed address %j with ERR_INVALID_ADDRESS',
  (address) => {
    expect(() => New('tcp', address, { pool })).toThrow(InvalidAddressError);
    expect(() => New('tcp', address, { pool })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ADDRESS' }));
  },
);

test.each(['udp', 'TCP', '', 'ip4'])('New() rejects the unknown network %j with ERR_UNKNOWN_NETWORK', (network) => {
  expect(() => New(network as 'tcp', 'localhost:80', { pool })).toThrow(UnknownNetworkError);
  expect(() => New(network as 'tcp', 'localhost:80', { pool })).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_NETWORK' }));
});

test('New() rejects an address of the wrong family and an empty unix path', () => {
  expect(() => New('tcp4', '[::1]:80', { pool })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ADDRESS' }));
  expect(() => New('tcp6', '127.0.0.1:80', { pool })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ADDRESS' }));
  expect(() => New('unix', '', { pool })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ADDRESS' }));
});

test.each(['localhost:80', '127.0.0.1:5432', '[::1]:443', 'db.internal:65535', 'my_host-1.example.com:1'])(
  'New() accepts %j and opens nothing',
  (address) => {
    const res = New('tcp', address, { pool });
    expect(res.address).toBe(address);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
  },
);

test('New() accepts a unix socket path', () => {
  expect(New('unix', '/tmp/some.sock', { pool }).network).toBe('unix');
});

test('New() rejects a pool that is not a ResourcePool with a TypeError', () => {
  expect(() => New('tcp', 'localhost:80', { pool: {} as ResourcePool })).toThrow(TypeError);
});

test.each([
  [0, RangeError],
  [-1, RangeError],
  [1.5, RangeError],
  [Number.NaN, RangeError],
  [Number.POSITIVE_INFINITY, RangeError],
  ['4', TypeError],
  [undefined, TypeError],
])('new ResourcePool({ max: %p }) throws %p showing the value', (max, errorClass) => {
  expect(() => new ResourcePool({ max: max as number })).toThrow(errorClass);
  expect(() => new ResourcePool({ max: max as number })).toThrow(String(typeof max === 'string' ? JSON.stringify(max) : max));
});

test('create() without allocate() and release() throws a TypeError', () => {
  expect(() => pool.create({} as never)).toThrow(TypeError);
});
