import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { APIError, type Limits } from '../api';
import { cluster, threeNodes } from '../testdata';
import { LimitsEditor } from './LimitsEditor';

const limits = cluster(threeNodes()).limits;

function edit(name: string, value: string) {
  fireEvent.change(document.querySelector(`input[name="${name}"]`)!, { target: { value } });
}

describe('LimitsEditor', () => {
  it('shows the limits in force', () => {
    render(<LimitsEditor limits={limits} />);
    expect((document.querySelector('input[name="slo_ms"]') as HTMLInputElement).value).toBe('500');
  });

  it('sends only the changed limits with the token and shows the committed result', async () => {
    const send = vi.fn(async (patch: Partial<Limits>) => ({ ...limits, ...patch }));
    render(<LimitsEditor limits={limits} send={send} />);
    edit('max_batch_size', '4321');
    edit('slo_ms', '500'); // unchanged: not sent
    edit('token', 's3cret');
    fireEvent.click(screen.getByText('Apply'));
    await waitFor(() => expect(screen.getByTestId('limits-result').textContent).toContain('max_batch_size = 4321'));
    expect(send).toHaveBeenCalledTimes(1);
    const [patch, token, id] = send.mock.calls[0] as unknown as [Partial<Limits>, string, string];
    expect(patch).toEqual({ max_batch_size: 4321 });
    expect(token).toBe('s3cret');
    expect(id).toMatch(/^ui-[0-9a-f]{24}$/);
    expect(screen.getByTestId('limits-result').className).toContain('ok');
  });

  it("shows the server's reason for a refused change", async () => {
    const send = vi.fn(async () => {
      throw new APIError(400, 'invalid limits: max_batch_size must be between 1 and 10000000, got 0');
    });
    render(<LimitsEditor limits={limits} send={send} />);
    edit('max_batch_size', '0');
    fireEvent.click(screen.getByText('Apply'));
    const result = await screen.findByRole('alert');
    expect(result.textContent).toContain('Refused (400): invalid limits: max_batch_size must be between');
    expect(screen.queryByText('Send again')).toBeNull();
  });

  it('says a wrong token is not allowed', async () => {
    render(<LimitsEditor limits={limits} send={async () => Promise.reject(new APIError(403, 'the API token is not valid'))} />);
    edit('slo_ms', '400');
    fireEvent.click(screen.getByText('Apply'));
    expect((await screen.findByRole('alert')).textContent).toContain('Not allowed (403)');
  });

  it('offers to send again with the same request id when the outcome is unknown', async () => {
    const send = vi
      .fn<(p: Partial<Limits>, t: string, id: string) => Promise<Limits>>()
      .mockRejectedValueOnce(new APIError(503, 'outcome unknown', 1))
      .mockImplementationOnce(async (p) => ({ ...limits, ...p }));
    render(<LimitsEditor limits={limits} send={send} />);
    edit('epoch_ms', '1000');
    fireEvent.click(screen.getByText('Apply'));
    expect((await screen.findByRole('alert')).textContent).toContain('Outcome unknown (503)');
    fireEvent.click(screen.getByText('Send again'));
    await waitFor(() => expect(screen.getByTestId('limits-result').textContent).toContain('epoch_ms = 1000'));
    expect(send.mock.calls[1][2]).toBe(send.mock.calls[0][2]);
    expect(send.mock.calls[1][0]).toEqual({ epoch_ms: 1000 });
  });

  it('checks the form before sending', () => {
    const send = vi.fn();
    render(<LimitsEditor limits={limits} send={send} />);
    fireEvent.click(screen.getByText('Apply'));
    expect(screen.getByRole('alert').textContent).toContain('nothing to change');
    edit('slo_ms', 'fast');
    fireEvent.click(screen.getByText('Apply'));
    expect(screen.getByRole('alert').textContent).toContain('not a number: slo_ms');
    expect(send).not.toHaveBeenCalled();
  });
});
